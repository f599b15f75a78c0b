#!/bin/sh
# Any other CI: after a failed build, print logmedic's Markdown diagnosis of build.log.
# Needs only curl. LOGMEDIC_URL is the service's base URL; LOGMEDIC_TOKEN is optional.
# Fails soft: a down, slow or refusing service prints a warning and the script still exits 0.
curl -sS --fail --max-time 20 --data-binary @build.log -H 'Accept: text/markdown' \
  ${LOGMEDIC_TOKEN:+-H "Authorization: Bearer $LOGMEDIC_TOKEN"} "$LOGMEDIC_URL/v1/classify" \
  || echo "logmedic: warning: no diagnosis (service down, slow or refusing the request)" >&2
