/**
 * RFC 4180 CSV reader: quoted fields may hold commas, doubled quotes and line
 * breaks; CRLF or LF line ends. Written here rather than pulled in as a
 * dependency because the one input it serves (nix-output-monitor's
 * build-reports.csv, written by Haskell's cassava) uses exactly this subset,
 * and a 40-line reader is easier to audit than a new package.
 */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  let i = 0;
  const endField = () => {
    row.push(field);
    field = '';
  };
  const endRow = () => {
    endField();
    // A blank line (one empty field) carries no record.
    if (!(row.length === 1 && row[0] === '')) rows.push(row);
    row = [];
  };
  while (i < text.length) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c === '"') quoted = false;
      else field += c;
      i += 1;
      continue;
    }
    if (c === '"' && field === '') quoted = true;
    else if (c === ',') endField();
    else if (c === '\n') endRow();
    else if (c === '\r' && text[i + 1] === '\n') {
      endRow();
      i += 1;
    } else field += c;
    i += 1;
  }
  if (quoted) throw new CsvError('a quoted field is not closed before the end of the text');
  if (field !== '' || row.length > 0) endRow();
  return rows;
}

export class CsvError extends Error {}
