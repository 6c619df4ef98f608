"""What every local grading worker imports, imported once, before any worker starts.

:func:`lmlogits_grader.parallel.grade_in_parallel` forks its local workers from a
multiprocessing *forkserver* that has imported this module: a worker then starts with
nbgrader, the grader's steps, torch and the model code already in memory, instead of
importing them itself (about 4 s of CPU per worker on a 2-core machine; ``make bench``).
Only code is imported here: no model is loaded, no thread pool started, and nothing is
read from the environment that a worker would need fresh (each worker takes the grading
process's environment of the moment: ``parallel._init_pool_process``).
"""

import os

# as a worker sets them (parallel._init_worker), before torch reads them at import
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import nbgrader.apps  # noqa: E402, F401  (the API the worker autogrades with)
import transformers  # noqa: E402

from lmlogits_grader import course, execute, judge, parallel  # noqa: E402, F401

# the reference model's code: AutoModelForCausalLM imports it on first use. distilgpt2
# and the built-in offline model are both GPT-2s; another model's code is imported by
# the worker itself, as before.
transformers.GPT2LMHeadModel  # noqa: B018
