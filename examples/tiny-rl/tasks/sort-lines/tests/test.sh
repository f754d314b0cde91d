#!/bin/bash
# reward 1 when /app/answer.txt is exactly the expected text
mkdir -p /logs/verifier
if printf 'apple\napple\nfig\npear\n' | cmp -s - /app/answer.txt; then echo PASS; echo 1 > /logs/verifier/reward.txt
else echo "FAIL: /app/answer.txt is not the expected text"; echo 0 > /logs/verifier/reward.txt; fi
