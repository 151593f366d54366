#!/usr/bin/env bash
# Installs the FHIR R4 validator of the tests (npm package fhir, FHIR.js, with its bundled R4 profiles).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d .cache/fhirjs/node_modules/fhir ] && exit 0
mkdir -p .cache/fhirjs
npm install --silent --no-audit --no-fund --prefix .cache/fhirjs fhir@4.12.0 >/dev/null
