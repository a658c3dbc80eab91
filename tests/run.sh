#!/usr/bin/env bash
# Runs every suite: unit tests (ctest) and integration tests (pytest against real agents), first
# on the normal build and then on the ASan+UBSan build, then replays each fuzz target's corpus.
# Ends with one line "N passed, N failed" counting suites; exits non-zero if any failed.
#   usage: tests/run.sh BUILD_DIR ASAN_BUILD_DIR FUZZ_BUILD_DIR
set -u
cd "$(dirname "$0")/.."
build=${1:-build} asan=${2:-build-asan} fuzz=${3:-build-fuzz}
passed=0 failed=0 failures=()

run() { # name, command...
  local name=$1; shift
  echo "==== $name"
  local start=$SECONDS
  if "$@"; then
    passed=$((passed + 1)); echo "==== $name: ok ($((SECONDS - start)) s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "==== $name: FAILED ($((SECONDS - start)) s)"
  fi
}

# Integration tests mostly wait (on gossip, Raft, timers), so two files run at once, each file
# on one worker (its module fixtures, such as a 5-agent cluster, are started once). With
# TEST_JOBS=1, or without pytest-xdist, they run one by one.
JOBS=${TEST_JOBS:-$(nproc)}
parallel=()
if [ "$JOBS" -gt 1 ] && /usr/bin/python3 -c 'import xdist' 2>/dev/null; then
  parallel=(-n "$JOBS" --dist loadfile)
fi

pytest_suite() { # binary, pytest args...
  local bin=$1; shift
  CONCORD_BIN="$bin" /usr/bin/python3 -m pytest -q -p no:cacheprovider "${parallel[@]}" "$@"
  local rc=$?
  [ $rc -eq 5 ] && { echo "no tests collected"; return 1; }
  return $rc
}

fuzz_replay() {
  local any=0
  for f in "$fuzz"/fuzz_*; do
    [ -x "$f" ] || continue
    any=1
    local name; name=$(basename "$f"); name=${name#fuzz_}
    local corpus=fuzz/corpus/$name
    [ -d "$corpus" ] || { echo "missing corpus $corpus"; return 1; }
    local dict=(); [ -f "fuzz/$name.dict" ] && dict=(-dict="fuzz/$name.dict")
    echo "replaying $(ls "$corpus" | wc -l) inputs through fuzz_$name"
    "$f" -runs=0 "${dict[@]}" "$corpus" 2>&1 | tail -2 || return 1
    "$f" -runs=0 "$corpus" >/dev/null 2>&1 || return 1
  done
  [ $any -eq 1 ]
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

run "unit" ctest --test-dir "$build" --output-on-failure
run "integration" pytest_suite "$PWD/$build/concord" tests/integration
run "unit (asan+ubsan)" ctest --test-dir "$asan" --output-on-failure
run "integration (asan+ubsan)" pytest_suite "$PWD/$asan/concord" tests/integration
run "fuzz corpus replay" fuzz_replay

echo
for f in "${failures[@]}"; do echo "failed suite: $f"; done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
