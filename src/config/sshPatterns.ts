// Host and Match patterns as OpenSSH matches them (match.c).

/** OpenSSH wildcards: "*" any run of characters, "?" exactly one. Host names compare case-insensitively. */
export function wildcardMatches(pattern: string, text: string, { ignoreCase = true } = {}): boolean {
  const source = [...pattern]
    .map((char) => (char === '*' ? '.*' : char === '?' ? '.' : char.replace(/[\\^$.|+()[\]{}]/g, '\\$&')))
    .join('');
  return new RegExp(`^${source}$`, ignoreCase ? 'si' : 's').test(text);
}

/** A Host line: some positive pattern matches and no negated pattern does. */
export function hostPatternsMatch(patterns: string[], host: string): boolean {
  let matched = false;
  for (const pattern of patterns) {
    if (pattern.startsWith('!')) {
      if (wildcardMatches(pattern.slice(1), host)) return false;
    } else if (wildcardMatches(pattern, host)) {
      matched = true;
    }
  }
  return matched;
}

/** A comma-separated pattern list in a Match criterion: same rule as a Host line. */
export function patternListMatches(patterns: string[], text: string): boolean {
  return hostPatternsMatch(patterns.filter((p) => p !== ''), text);
}
