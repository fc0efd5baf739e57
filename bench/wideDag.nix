# Benchmark DAG: `n` independent leaves (each sleeps `sleep` seconds) and a top
# that reads them all. Absolute /bin paths: Nix sets PATH to a dummy value.
{ nonce, n ? 60, sleep ? "1" }:
let
  leaf = i: derivation {
    name = "leaf-${toString i}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "${if sleep == "0" then "" else "/bin/sleep ${sleep};"} echo ${nonce}-${toString i} > $out" ];
  };
  leaves = builtins.genList leaf n;
in
derivation {
  name = "top-${toString n}";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "for f in ${builtins.concatStringsSep " " (map toString leaves)}; do read l < $f; echo $l; done > $out" ];
}
