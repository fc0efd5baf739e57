# Benchmark DAG: `n` independent leaves (each sleeps `sleep` seconds) and a top
# that reads them all. Absolute /bin paths: Nix sets PATH to a dummy value.
# With `carrying = k`, a derivation using the first k leaves instead of the
# top: built on a builder, it leaves those leaves there to push to a cache.
{ nonce, n ? 60, sleep ? "1", carrying ? 0 }:
let
  leaf = i: derivation {
    name = "leaf-${toString i}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    args = [ "-c" "${if sleep == "0" then "" else "/bin/sleep ${sleep};"} echo ${nonce}-${toString i} > $out" ];
  };
  leaves = builtins.genList leaf n;
in
if carrying > 0 then derivation {
  name = "carrier-${toString carrying}";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "echo ${builtins.concatStringsSep " " (map toString (builtins.genList (builtins.elemAt leaves) carrying))} > /dev/null; echo carried > $out" ];
} else derivation {
  name = "top-${toString n}";
  system = builtins.currentSystem;
  builder = "/bin/sh";
  args = [ "-c" "for f in ${builtins.concatStringsSep " " (map toString leaves)}; do read l < $f; echo $l; done > $out" ];
}
