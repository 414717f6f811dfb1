#!/usr/bin/env bash
# Seeds the fuzz corpus with the conformance packets (one file each, first byte = read size for the target).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p corpus/hj212_stream
i=0
while IFS= read -r line; do
  i=$((i + 1))
  printf '\x40%s\r\n' "$line" > "corpus/hj212_stream/real_$i"
done < ../tests/data/hj212/real_packets.txt
echo "seeded $i inputs"
