#!/usr/bin/env bash
# The whole test suite: the workspace with the agent compiled in, then the runtime crate with
# it compiled out (`--no-default-features`), which a workspace build cannot cover because
# cargo unifies features across the workspace.
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --all-targets --no-fail-fast
cargo test --workspace --doc
cargo test -p apm-agent --no-default-features --all-targets
# The macro crate on its own, without the `enable` feature the workspace turns on: the
# arguments are still checked and the function emitted unchanged.
cargo test -p apm-agent-macros --lib
