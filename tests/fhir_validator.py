"""FHIR R4 validation with a real third-party validator: the npm package ``fhir`` (FHIR.js) with its bundled
R4 profiles, run as one long-lived node process that reads one JSON resource per line and answers with
its error messages. ``.ci/run`` installs it into ``.cache/fhirjs`` (``tests/fhir_validate.sh``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODULES = ROOT / ".cache" / "fhirjs" / "node_modules"
SCRIPT = r"""
const {Fhir, Versions, ParseConformance} = require('fhir');
const fhir = new Fhir(new ParseConformance(true, Versions.R4));
const rl = require('readline').createInterface({input: process.stdin});
rl.on('line', (line) => {
  let out;
  try {
    const r = fhir.validate(JSON.parse(line));
    out = (r.messages || []).filter(m => m.severity === 'error').map(m => `${m.location}: ${m.message}`);
  } catch (e) { out = [`validator crashed: ${e}`]; }
  process.stdout.write(JSON.stringify(out) + '\n');
});
"""


class R4Validator:
    """``errors(resource)`` -> the validator's error messages (empty: valid R4)."""

    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None or not (MODULES / "fhir").is_dir():
            raise RuntimeError("the npm package fhir is not installed: run tests/fhir_validate.sh")
        self._proc = subprocess.Popen([node, "-e", SCRIPT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      text=True, cwd=MODULES.parent, env={"NODE_PATH": str(MODULES)})
        self._lock = threading.Lock()

    def errors(self, resource: dict[str, Any]) -> list[str]:
        with self._lock:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(json.dumps(resource) + "\n")
            self._proc.stdin.flush()
            return list(json.loads(self._proc.stdout.readline()))

    def check(self, resource: dict[str, Any]) -> None:
        """Assert that ``resource`` (or every entry of a Bundle, and the Bundle) is valid R4."""
        problems = self.errors(resource)
        assert not problems, (resource.get("resourceType"), problems)
        for entry in resource.get("entry", []) if resource.get("resourceType") == "Bundle" else []:
            if "resource" in entry:
                self.check(entry["resource"])

    def close(self) -> None:
        self._proc.terminate()
        self._proc.wait(5)
