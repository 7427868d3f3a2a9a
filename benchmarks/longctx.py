#!/usr/bin/env python3
"""Same as `python -m lazyllm_edge.eval` (LazyLLM schedules vs dense on the packaged lazyllm_edge/data/eval/longctx-dev.jsonl)."""
import sys

from lazyllm_edge.eval import main

sys.exit(main())
