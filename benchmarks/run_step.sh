# Sourced by gpu_scan.sh and gpu_quality.sh: run one timed step of a GPU benchmark.
#   run_step NAME SECONDS COMMAND...   its JSON lines into $out/NAME.jsonl (and the output),
#                                      the last 60 log lines into $out/NAME.log, its last errors;
#                                      returns the command's exit status
run_step() {
  local name=$1 limit=$2 rc
  shift 2
  echo "$name: $(date +%T)"
  # -k: Ray turns SIGTERM into an orderly shutdown, which can itself hang
  timeout -k 20 "$limit" "$@" > "/tmp/$name.log" 2>&1
  rc=$?
  echo "$name rc $rc"
  grep "^{" "/tmp/$name.log" | tee "$out/$name.jsonl"
  tail -n 60 "/tmp/$name.log" > "$out/$name.log"  # the exception, when there is one
  grep -v "^{" "/tmp/$name.log" | grep -iE "^[A-Za-z.]*(Error|Exception)\b" | tail -3
  return $rc
}
