#!/bin/bash
# One authorization-code + PKCE flow with curl and a fresh cookie jar, then one refresh.
set -euo pipefail
BASE=${BASE:-http://127.0.0.1:3000}
CLIENT=${CLIENT:-bench}; SECRET=${SECRET:-bench-secret}
JAR=$(mktemp)
VERIFIER=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
CHALLENGE=$(printf %s "$VERIFIER" | openssl dgst -sha256 -binary | base64 | tr '+/' '-_' | tr -d '=')
REDIRECT=http://127.0.0.1:9999/cb
loc() { curl -s -o /dev/null -w '%{redirect_url}' -b "$JAR" -c "$JAR" "$1"; }
L1=$(loc "$BASE/auth?client_id=$CLIENT&response_type=code&redirect_uri=$REDIRECT&scope=openid%20offline_access%20api:read&prompt=consent&state=s1&code_challenge=$CHALLENGE&code_challenge_method=S256")
echo "1 -> $L1"
L2=$(loc "$L1"); echo "2 -> $L2"
L3=$(loc "$L2"); echo "3 -> $L3"
CODE=$(sed -n 's/.*[?&]code=\([^&]*\).*/\1/p' <<<"$L3")
TOK=$(curl -s -u "$CLIENT:$SECRET" --data-urlencode grant_type=authorization_code --data-urlencode code="$CODE" \
  --data-urlencode redirect_uri=$REDIRECT --data-urlencode code_verifier="$VERIFIER" "$BASE/token")
echo "token: $TOK"
RT=$(node -e 'console.log(JSON.parse(process.argv[1]).refresh_token)' "$TOK")
echo "refresh: $(curl -s -u "$CLIENT:$SECRET" --data-urlencode grant_type=refresh_token --data-urlencode refresh_token="$RT" "$BASE/token")"
echo "refresh again with old RT (rotation => invalid_grant): $(curl -s -u "$CLIENT:$SECRET" --data-urlencode grant_type=refresh_token --data-urlencode refresh_token="$RT" "$BASE/token")"
rm -f "$JAR"
