"""Benchmark: the built-in model's build and load times, and how fast a missing model fails.

Prints, measured in this run:
- building the tiny model into an empty cache, and loading it once cached;
- ``resolve_model("distilgpt2")`` with no network and no cached copy, with and without
  ``HF_HUB_OFFLINE``;
- with ``--compare-transformers``: transformers' own ``from_pretrained("distilgpt2")``
  in the same situation (it retries for tens of seconds), for the ratio.

Usage: ``python benchmarks/bench_model.py [--compare-transformers]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

SNIPPETS = {
    "build tiny model (empty cache, in-process, after imports)": (
        "import time, torch, transformers\n"
        "from lmlogits.tiny import ensure_tiny_model\n"
        "t = time.perf_counter(); ensure_tiny_model(); print(time.perf_counter() - t)\n"
    ),
    "load tiny model (cached, after imports)": (
        "import time, torch, transformers\n"
        "from lmlogits import load_model_and_tokenizer\n"
        "from lmlogits.tiny import ensure_tiny_model\n"
        "ensure_tiny_model()\n"
        "t = time.perf_counter(); load_model_and_tokenizer('tiny')\n"
        "print(time.perf_counter() - t)\n"
    ),
    "load it again in the same process (files only, code already imported)": (
        "import time, torch, transformers\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "from lmlogits.tiny import ensure_tiny_model\n"
        "folder = ensure_tiny_model()\n"
        "AutoModelForCausalLM.from_pretrained(folder)\n"
        "t = time.perf_counter()\n"
        "AutoTokenizer.from_pretrained(folder, add_prefix_space=True)\n"
        "AutoModelForCausalLM.from_pretrained(folder)\n"
        "print(time.perf_counter() - t)\n"
    ),
    "resolve_model('distilgpt2'): no network, not cached": (
        "import time\n"
        "from lmlogits import ModelUnavailableError, resolve_model\n"
        "t = time.perf_counter()\n"
        "try:\n    resolve_model('distilgpt2')\nexcept ModelUnavailableError:\n    pass\n"
        "print(time.perf_counter() - t)\n"
    ),
}
SILENT_HUB_SNIPPET = (
    "import os, socket, time\n"
    "server = socket.socket(); server.bind(('127.0.0.1', 0)); server.listen()\n"
    "os.environ['HF_ENDPOINT'] = f'http://127.0.0.1:{server.getsockname()[1]}'\n"
    "from lmlogits import ModelUnavailableError, resolve_model\n"
    "t = time.perf_counter()\n"
    "try:\n    resolve_model('distilgpt2')\nexcept ModelUnavailableError:\n    pass\n"
    "print(time.perf_counter() - t)\n"
)
TRANSFORMERS_SNIPPET = (
    "import time\n"
    "from transformers import AutoModelForCausalLM\n"
    "t = time.perf_counter()\n"
    "try:\n    AutoModelForCausalLM.from_pretrained('distilgpt2')\nexcept OSError:\n    pass\n"
    "print(time.perf_counter() - t)\n"
)


def measure(code: str, env: dict[str, str]) -> float:
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, check=True).stdout
    return float(output.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare-transformers", action="store_true")
    args = parser.parse_args()
    empty = tempfile.mkdtemp(prefix="lmlogits-bench-")
    base = {**os.environ, "LMLOGITS_CACHE": empty, "HF_HUB_CACHE": empty + "/hub",
            "TOKENIZERS_PARALLELISM": "false"}
    base.pop("LMLOGITS_MODEL", None)
    online = {k: v for k, v in base.items() if k != "HF_HUB_OFFLINE"}
    rows = [
        (name, measure(code, {**base, "HF_HUB_OFFLINE": "1"}))
        for name, code in list(SNIPPETS.items())[:3]
    ]
    failing = list(SNIPPETS.items())[3]
    rows.append((failing[0] + ", HF_HUB_OFFLINE=1", measure(failing[1],
                                                             {**base, "HF_HUB_OFFLINE": "1"})))
    ours = measure(failing[1], online)
    rows.append((failing[0] + ", no offline flag", ours))
    rows.append(("resolve_model('distilgpt2'): hub accepts connections, never answers",
                 measure(SILENT_HUB_SNIPPET, online)))
    if args.compare_transformers:
        theirs = measure(TRANSFORMERS_SNIPPET, online)
        rows.append(("transformers from_pretrained('distilgpt2'), same situation", theirs))
    width = max(len(name) for name, _ in rows)
    print(f"{'measurement':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.2f}")
    if args.compare_transformers:
        print(f"failing fast: {theirs / ours:.0f}x sooner than transformers' own error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
