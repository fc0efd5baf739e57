# Benchmark DAG: a chain of `n` links, each sleeping `sleep` seconds and
# reading the link before it: its critical path is n × sleep.
{ nonce, n ? 6, sleep ? "3" }:
let
  link = i: derivation {
    name = "link-${toString i}";
    system = builtins.currentSystem;
    builder = "/bin/sh";
    prev = if i == 0 then "" else link (i - 1);
    args = [ "-c" "/bin/sleep ${sleep}; echo ${nonce}-${toString i} > $out" ];
  };
in
link (n - 1)
