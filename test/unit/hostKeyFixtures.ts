/**
 * Public keys made once with ssh-keygen; the fingerprints are what
 * `ssh-keygen -lf <key>.pub` printed for them (OpenSSH 9.2).
 */
export const ED25519 = {
  line: 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9uGuDT2rdvPcurj017BdtANT5cgNg8OL+winWQMItm',
  fingerprint: 'SHA256:bK1ZIgKKaWgJLXZDQM/Jq6A0St4rqUeFckZtAsiNsKs',
};
export const ECDSA = {
  line: 'ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBFJazD0Un+KjZmBzcJ8XYgGELGm9dE+YAPbEK1Zs0U+ZnkZCvSe2sw+aZash0NPl+OqBKN8l93oS12KiukWxSr8=',
  fingerprint: 'SHA256:6jAMCwQq/jwBs04fX4uKdazEqCBIiuaDDGCtS/+z1bw',
};
export const RSA = {
  line:
    'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC9xwa2GgOmxDWlmGBHk+ugaxvgv42W46VmayzalhjoO82NOnI/9ReTG43SSKQygCuFKnCwfY2uPXidwp8vmdG3uNeENMh3xtg6QxLeXd6y6KF+nHkMZYbNc66P6jYvX9bteKB8JDfTH0t1qMmjrwpEcn84us93StOOorKidU3Uaw==',
  fingerprint: 'SHA256:JixvS/n1QXmqm/J5AFwDdVwbN8YXmGzTJRVT+IcwreU',
};

/**
 * `ssh-keygen -H` of:
 *   [127.0.0.1]:2222 <ED25519>
 *   builder.example.org <ECDSA>
 */
export const HASHED_KNOWN_HOSTS = [
  `|1|wDBck0jWOQILFyMo7EoH8Z3Rrao=|9wzcgrpQrKu3/vENiA8EtPXSp10= ${ED25519.line}`,
  `|1|5G0D8u78MS2nb3meo/cOvF178ZY=|1yHCj0ztUXTYY43AMO1XxYmY8f0= ${ECDSA.line}`,
].join('\n');

export const blobOf = (line: string): Buffer => Buffer.from(line.split(' ')[1]!, 'base64');
export const pinOf = (line: string): string => Buffer.from(line).toString('base64');
