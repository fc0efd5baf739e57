/**
 * A machine as written in a machines file or `--builders` string, before
 * ssh_config resolution turns its hostName into an address. Both file formats
 * parse to this, so everything after parsing is format-independent.
 */
export interface MachineSpec {
  hostName: string;
  sshUser?: string;
  sshKey?: string;
  port?: number;
  systems: string[];
  supportedFeatures: string[];
  mandatoryFeatures: string[];
  maxJobs: number;
  speedFactor: number;
  publicHostKey?: string;
}
