# Transfer benchmark derivations. Absolute /bin paths: Nix sets PATH to a
# dummy value. `nonce` makes every path new, so nothing is valid anywhere yet.
{ nonce, case, mib ? 1024, files ? 20000, inputs ? [ ], feature ? null }:
let
  base = name: args: derivation ({
    inherit name;
    system = builtins.currentSystem;
    builder = "/bin/sh";
  } // args);
  # Random bytes: nothing on the way can compress them.
  big = featureName: base "big-${toString mib}MiB-${nonce}" ({
    args = [ "-c" "/bin/dd if=/dev/urandom of=$out bs=1M count=${toString mib} status=none" ];
  } // (if featureName == null then { } else { requiredSystemFeatures = [ featureName ]; }));
in
{
  # A remote build writes `mib` MiB; it comes back to the local store.
  copyBack = big null;
  # Needs every path in `inputs` (store paths only the local store has): they go up.
  upload = base "upload-${nonce}" {
    args = [ "-c" "for f in ${builtins.concatStringsSep " " (map (p: "${builtins.storePath p}") inputs)}; do /bin/test -e $f || exit 1; done; echo ${nonce} > $out" ];
  };
  # Built on the builder with feature "left", needed on the one with "right".
  builderToBuilder = base "reader-${nonce}" {
    requiredSystemFeatures = [ "right" ];
    args = [ "-c" "/bin/wc -c < ${big "left"} > $out" ];
  };
  # One output of `files` small files, written with shell builtins only.
  manyFiles = base "files-${toString files}-${nonce}" {
    args = [ "-c" "/bin/mkdir $out; i=0; while [ $i -lt ${toString files} ]; do echo ${nonce}-$i > $out/f$i; i=$((i+1)); done" ];
  };
}.${case}
