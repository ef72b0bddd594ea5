#!/usr/bin/env bash
# The test command: installs dependencies, builds with AddressSanitizer and
# UndefinedBehaviorSanitizer, checks formatting and runs the unit and
# integration tests. Integration tests start their own PostgreSQL servers on
# loopback, so nothing needs to be running beforehand; the docker sandbox's
# tests need dockerd and a local postgres:15 image, which this script starts
# and builds (the image is kept between runs; dockerd is stopped at the end
# if this script started it).
#
# Environment: SG_BUILD_DIR (default build-asan), SG_JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${SG_BUILD_DIR:-build-asan}
jobs=${SG_JOBS:-2}
started=$SECONDS
step=""
failed=()
stop_docker=0

summary() {
    local rc=$? took=$((SECONDS - started))
    [ -n "$step" ] && [ $rc -ne 0 ] && failed+=("$step")
    [ $stop_docker -eq 0 ] || ci/docker-service.sh stop || true
    if [ ${#failed[@]} -eq 0 ]; then
        echo "run-tests: ok in ${took}s"
    else
        echo "run-tests: FAILED (${failed[*]}) in ${took}s"
        [ $rc -ne 0 ] || rc=1
    fi
    exit $rc
}
trap summary EXIT

section() {
    step=$1
    echo "==> $step"
}

section install-deps
ci/install-deps.sh

section configure
cmake -S . -B "$build" -DSG_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo

section build
cmake --build "$build" -j"$jobs"

# A formatting slip should not hide test results: note it and go on.
section format
ci/check-format.sh || failed+=(format)

# Without dockerd only the docker sandbox's tests can fail: note it and go on.
section docker
if ! ci/docker-service.sh running; then
    stop_docker=1
    ci/docker-service.sh start || failed+=(docker)
fi
ci/docker-service.sh running && { ci/postgres-image.sh || failed+=(docker); }

section test
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd "$build" && ctest --output-on-failure --no-tests=error -j"$jobs" --timeout 1200) || failed+=(test)
step=""
