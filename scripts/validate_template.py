"""Offline validation of template.yaml.

Three passes, all of which must pass:
  1. `sam validate` (SAM's own schema check),
  2. cfn-lint on the SAM template with the serverless rules,
  3. cfn-lint on the template *after* samtranslator has expanded the AWS::Serverless
     resources. cfn-lint no longer expands them itself, so without this pass a wrong
     Runtime, StartingPosition or !GetAtt inside a Serverless resource would pass.

Usage: validate_template.py [TEMPLATE]   (default: template.yaml)
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cfnlint.decode import decode
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

VENV_BIN = Path(sys.executable).parent


def translate(template_path: Path) -> dict:
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template, matches = decode(str(template_path))
    if matches or template is None:
        for m in matches:
            print(f"{template_path}: {m}", file=sys.stderr)
        raise SystemExit(1)
    # `sam package` replaces local CodeUri folders with S3 locations before CloudFormation
    # sees the template; do the same so the translator accepts it.
    def packaged(code_uri):
        if isinstance(code_uri, str) and not code_uri.startswith("s3://"):
            return f"s3://packaged-artifacts/{code_uri.strip('./') or 'root'}.zip"
        return code_uri

    globals_fn = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in globals_fn:
        globals_fn["CodeUri"] = packaged(globals_fn["CodeUri"])
    for resource in template.get("Resources", {}).values():
        props = resource.get("Properties") or {}
        if resource.get("Type") == "AWS::Serverless::Function" and "CodeUri" in props:
            props["CodeUri"] = packaged(props["CodeUri"])
    # Only inline policy statements are used, so no managed-policy lookup (and no AWS
    # call) is needed to translate.
    translator = Translator(managed_policy_map={}, sam_parser=Parser())
    return translator.translate(sam_template=template, parameter_values={}, get_managed_policy_map=lambda: {})


def run(cmd: list[str], env: dict) -> bool:
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"FAILED: {' '.join(cmd)}", file=sys.stderr)
        print(result.stdout + result.stderr, file=sys.stderr)
        return False
    return True


def main() -> int:
    template_path = Path(sys.argv[1] if len(sys.argv) > 1 else "template.yaml")
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    env["SAM_CLI_TELEMETRY"] = "0"
    ok = run([str(VENV_BIN / "sam"), "validate", "--template", str(template_path)], env)
    ok &= run([str(VENV_BIN / "cfn-lint"), str(template_path), "-a", "cfn_lint_serverless.rules"], env)
    try:
        translated = translate(template_path)
    except Exception as exc:  # samtranslator reports invalid SAM as exceptions
        print(f"FAILED: samtranslator could not translate {template_path}: {exc}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "translated.json"
        out.write_text(json.dumps(translated, indent=1))
        ok &= run([str(VENV_BIN / "cfn-lint"), str(out)], env)
    if ok:
        print(f"{template_path}: sam validate, cfn-lint (serverless rules) and cfn-lint (translated) all pass")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
