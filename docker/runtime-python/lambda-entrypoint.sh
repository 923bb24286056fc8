#!/bin/sh
# Same contract as the entrypoint of AWS's Lambda base images: the handler is the only
# argument and the runtime client talks to AWS_LAMBDA_RUNTIME_API.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  # AWS's images fall back to the Runtime Interface Emulator here; this base ships none.
  echo "AWS_LAMBDA_RUNTIME_API is not set: run this image under edgelambda" 1>&2
  exit 142
fi
exec /var/runtime/bootstrap
