"""The judge: decide every graded cell in the grader's own process.

:class:`lmlogits_grader.execute.SandboxedExecute` runs the student's notebook in a
sandboxed kernel and, after each graded cell, keeps the JSON its probe handed back
(``nb.metadata["lmlogits_probes"]``). :class:`Judge` runs next, outside the kernel:

1. it parses that JSON as untrusted data (types, sizes and shapes checked);
2. it compares it with the reference computed by the grader's own model
   (:class:`lmlogits_grader.checks.Reference`) and, for the global-variable rule,
   compiles the submitted source itself (never running it) and reads its bytecode;
3. it replaces each graded cell's outputs with the verdict: a one-line stream output on
   a pass, an error output with the message on a failure.

nbgrader's ``SaveAutoGrades`` then scores the cells from those outputs, so nothing the
student's code printed, displayed or returned in a cell can score it: only the verdict.
"""

from __future__ import annotations

import ast
import base64
import builtins
import linecache
import time
import types
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import NbGraderPreprocessor

from lmlogits_grader import checks, probe
from lmlogits_grader.checks import Call, Reference, Table, Verdict
from lmlogits_grader.collect import BROKEN_KEY

if TYPE_CHECKING:  # imported where needed: see lmlogits_grader.checks
    import torch

PROBES_KEY = "lmlogits_probes"  # set by SandboxedExecute, removed here

_MAX_TEXT = 2000
_FILENAME = "<predict_next_tokens cell>"
_MAX_ROWS = 1000

HIDDEN_OUTPUT_NOTE = (
    "(The grader called predict_next_tokens after your notebook ran; anything it printed "
    "or displayed then is not shown.)"
)

# Names the kernel itself puts in a notebook's namespace: built-ins for the global check.
KERNEL_BUILTINS = ("display", "get_ipython", "exit", "quit", "open", "__IPYTHON__")


# --- parsing what the kernel sent back ------------------------------------------------


def _text(value: object, limit: int = _MAX_TEXT) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_table(data: object) -> tuple[Table | None, str]:
    """``(table, "")`` for a DataFrame, ``(None, type name)`` otherwise."""
    if not isinstance(data, dict) or data.get("kind") != "table":
        kind = data.get("type") if isinstance(data, dict) else None
        return None, _text(kind, 60) or "unknown"
    columns = data.get("columns")
    rows = _int(data.get("rows"))
    if not isinstance(columns, list) or rows is None or rows < 0:
        return None, "unknown"
    columns = tuple(c for c in (_text(c, 60) for c in columns[:20]) if c is not None)

    def column(name, convert):
        values = data.get(name)
        if not isinstance(values, list):
            return None
        return tuple(convert(v) for v in values[:_MAX_ROWS])

    def probability(v):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    tokens = column("tokens", lambda v: _text(v, 300))
    probabilities = column("probabilities", probability)
    return Table(columns, rows, tokens, probabilities), ""


def parse_call(spec: tuple[str, int, bool], data: object) -> Call:
    """One probe call, paired with the call the grader asked for (never the kernel's)."""
    phrase, k, hidden = spec
    if not isinstance(data, dict):
        return Call(phrase, k, hidden, lost=True)
    if data.get("timeout") is True:
        return Call(phrase, k, hidden, timed_out=True)
    if "error" in data:
        return Call(phrase, k, hidden, error=_text(data.get("error"), 60) or "Exception",
                    error_message=_text(data.get("message"), 300) or "")
    table, other = parse_table(data.get("result"))
    return Call(phrase, k, hidden, table=table, other_type=other)


def parse_calls(specs, answers: object) -> list[Call]:
    answers = answers if isinstance(answers, list) else []
    return [parse_call(spec, answers[i] if i < len(answers) else None)
            for i, spec in enumerate(specs)]


def parse_array(data: object) -> tuple[torch.Tensor | None, list[int] | None, str]:
    """``(values, shape, type name)``; values is None when none came back."""
    import torch

    if not isinstance(data, dict):
        return None, None, "missing"
    if data.get("kind") == "missing":
        return None, None, "missing"
    if data.get("kind") != "array":
        return None, None, _text(data.get("type"), 60) or "unknown"
    shape = data.get("shape")
    if not isinstance(shape, list) or len(shape) > 8 or any(_int(n) is None for n in shape):
        return None, None, "Tensor"
    count = int(np.prod(shape)) if shape else 1
    if isinstance(data.get("ints"), list):
        ints = data["ints"]
        if len(ints) != count or any(_int(v) is None for v in ints):
            return None, shape, "Tensor"
        return torch.tensor(ints, dtype=torch.int64).reshape(shape), shape, "Tensor"
    encoded = data.get("float32")
    if isinstance(encoded, str) and len(encoded) <= 4 * count * 4 // 3 + 8:
        try:
            raw = base64.b64decode(encoded, validate=True)
        except ValueError:
            return None, shape, "Tensor"
        if len(raw) == 4 * count:
            values = np.frombuffer(raw, dtype=np.float32).copy()
            return torch.from_numpy(values).reshape(shape), shape, "Tensor"
    return None, shape, "Tensor"


# --- step checks (variables read after each step's test cell) ------------------------


def _phrase(variables: dict) -> str | None:
    data = variables.get("phrase")
    if isinstance(data, dict) and data.get("kind") == "str":
        return _text(data.get("value"))
    return None


def _close(values: torch.Tensor, expected: torch.Tensor, tolerance: float) -> bool:
    import torch

    return values.shape == expected.shape and bool(
        torch.allclose(values.float(), expected, rtol=1e-4, atol=tolerance)
    )


def check_step1(variables: dict, reference: Reference) -> Verdict:
    phrase = _phrase(variables)
    if phrase is None:
        return Verdict(False, "`phrase` is not a string")
    values, shape, kind = parse_array(variables.get("input_ids"))
    expected = reference.input_ids(phrase)
    if kind == "missing":
        return Verdict(False, "`input_ids` is not defined")
    if shape != [1, len(expected)]:
        return Verdict(False, f"`input_ids` must be a tensor of shape (1, {len(expected)})"
                              f" for this phrase, got {checks.shown_type(kind)} {shape or ''}")
    if values is None or values.reshape(-1).tolist() != expected:
        return Verdict(False, "`input_ids` are not the tokenizer's ids of `phrase`")
    return Verdict(True, f"input_ids has shape (1, {len(expected)}) and tokenizes `phrase`")


def _array_step(variables: dict, reference: Reference, name: str, expected_of,
                wrong_values: str) -> Verdict:
    """A step whose variable ``name`` must be a tensor equal to ``expected_of(phrase)``
    (within the logit tolerance): its shape is checked first, then its values."""
    phrase = _phrase(variables)
    if phrase is None:
        return Verdict(False, "`phrase` is not a string")
    values, shape, kind = parse_array(variables.get(name))
    expected = expected_of(phrase)
    wanted = tuple(expected.shape)
    if kind == "missing":
        return Verdict(False, f"`{name}` is not defined")
    if shape != list(wanted):
        return Verdict(False, f"`{name}` must have shape {wanted}, "
                              f"got {checks.shown_type(kind)} {shape or ''}")
    if values is None or not _close(values, expected, checks.LOGIT_TOLERANCE):
        return Verdict(False, wrong_values)
    return Verdict(True, f"{name} has shape {wanted} and the model's values")


def check_step2(variables: dict, reference: Reference) -> Verdict:
    return _array_step(variables, reference, "model_output.logits",
                       lambda phrase: reference.logits(phrase)[None],  # (1, n, vocab)
                       "`model_output.logits` are not the model's logits for `phrase`")


def check_step3(variables: dict, reference: Reference) -> Verdict:
    return _array_step(variables, reference, "last_token_logits",
                       lambda phrase: reference.logits(phrase)[-1],  # (vocab,)
                       "`last_token_logits` is not the row of the last position "
                       "(batch 0, position -1)")


def check_step4(variables: dict, reference: Reference) -> Verdict:
    phrase = _phrase(variables)
    if phrase is None:
        return Verdict(False, "`phrase` is not a string")
    values, shape, kind = parse_array(variables.get("last_token_probabilities"))
    expected = reference.probabilities(phrase)
    if kind == "missing":
        return Verdict(False, "`last_token_probabilities` is not defined")
    if values is None or not _close(values, expected, 1e-6):
        return Verdict(False, "`last_token_probabilities` is not the softmax of the last "
                              "position's logits")
    token_id = variables.get("most_likely_token_id")
    if not (isinstance(token_id, dict) and token_id.get("kind") == "int"):
        return Verdict(False, "`most_likely_token_id` is not an integer")
    best = expected.max()
    if _int(token_id.get("value")) is None or not (
        0 <= token_id["value"] < expected.numel()
        and float(best - expected[token_id["value"]]) <= checks.TIE_TOLERANCE
    ):
        return Verdict(False, "`most_likely_token_id` is not the id with the highest probability")
    return Verdict(True, "softmax of the last logits, and the id of its largest entry")


def check_step5(variables: dict, reference: Reference) -> Verdict:
    phrase = _phrase(variables)
    if phrase is None:
        return Verdict(False, "`phrase` is not a string")
    table, kind = parse_table(variables.get("top_10"))
    if table is None:
        if kind == "missing":
            return Verdict(False, "`top_10` is not defined")
        return Verdict(False, f"`top_10` is {checks.shown_type(kind)}, expected a DataFrame")
    problem = checks.table_problem(table, 10, hidden=False) or checks.reference_problem(
        table, phrase, 10, reference
    )
    if problem:
        return Verdict(False, f"`top_10`: {problem}")
    return Verdict(True, "a DataFrame of the 10 most likely tokens, most likely first")


# --- the global-variable rule, on the submitted source --------------------------------


class _NotebookValue:
    """Stands in for a notebook variable: the global check only asks whether it exists."""


def _python_source(source: str) -> str:
    """A code cell as plain Python (IPython magics and shell escapes turned into calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _top_level_names(tree: ast.Module) -> dict[str, object]:
    """Names a cell binds at the notebook's top level, with stand-ins for their values."""
    names: dict[str, object] = {}

    def visit(statements):
        for node in statements:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names[node.name] = _NotebookValue()
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    bound = alias.asname or alias.name.split(".")[0]
                    is_module = isinstance(node, ast.Import)
                    names[bound] = types.ModuleType(alias.name) if is_module else _NotebookValue()
                continue
            for child in ast.walk(node):
                if isinstance(child, ast.Name) and isinstance(child.ctx, ast.Store):
                    names[child.id] = _NotebookValue()
            for field in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(node, field, None)
                if isinstance(block, list):
                    visit([b for b in block if isinstance(b, ast.stmt)] +
                          [s for h in block if isinstance(h, ast.ExceptHandler) for s in h.body])

    visit(tree.body)
    return names


def submitted_function(nb: NotebookNode, name: str = "predict_next_tokens"):
    """The last top-level ``def name`` of the notebook's code cells, compiled, not run.

    Returns ``(function, problem)``: a function object whose globals stand in for the
    notebook's top-level names (so the global check can tell notebook variables from
    undefined names), or None and why.
    """
    namespace: dict[str, object] = {}
    found = None
    for cell in nb.cells:
        if cell.cell_type != "code" or len(cell.source) > 200_000:
            continue
        try:
            source = _python_source(cell.source)
            tree = ast.parse(source)
        except Exception:  # a cell that does not parse defines nothing
            continue
        namespace.update(_top_level_names(tree))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node.name == name and node.col_offset == 0:
                found = (source, node)
    if found is None:
        return None, f"no `def {name}` that Python can compile was found"
    source, node = found
    module = compile(ast.Module(body=[node], type_ignores=[]), _FILENAME, "exec")
    code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
    kernel_builtins = dict(vars(builtins))
    for extra in KERNEL_BUILTINS:
        kernel_builtins.setdefault(extra, _NotebookValue())
    scope = {**namespace, "__builtins__": kernel_builtins, "__name__": "__main__"}
    function = types.FunctionType(code, scope, name)
    defaults = [_default_value(d) for d in node.args.defaults]
    function.__defaults__ = tuple(defaults) or None
    keyword_defaults = {
        arg.arg: _default_value(d)
        for arg, d in zip(node.args.kwonlyargs, node.args.kw_defaults, strict=True)
        if d is not None
    }
    function.__kwdefaults__ = keyword_defaults or None
    scope[name] = function
    # so that the check's message can quote the function's lines
    linecache.cache[_FILENAME] = (len(source), None, source.splitlines(True), _FILENAME)
    return function, ""


def _default_value(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NotebookValue()  # computed in the notebook when `def` ran


def check_no_global_vars(nb: NotebookNode) -> Verdict:
    from lmlogits.globals_check import check_global_vars

    function, problem = submitted_function(nb)
    if function is None:
        return Verdict(False, f"predict_next_tokens: {problem}")
    try:
        check_global_vars(function, allowed_globals=list(checks.ALLOWED_GLOBALS))
    except AssertionError as error:
        return Verdict(False, str(error))
    return Verdict(True, "uses only its parameters and torch, tokenizer, pd, model")


# --- deciding each graded cell -----------------------------------------------------------

_STEP_CHECKS: dict[str, Callable[[dict, Reference], Verdict]] = {
    "test_step1": check_step1,
    "test_step2": check_step2,
    "test_step3": check_step3,
    "test_step4": check_step4,
    "test_step5": check_step5,
}
_CALL_CHECKS = {
    "test_returns_k_rows": checks.check_returns_k_rows,
    "test_matches_reference": checks.check_matches_reference,
    "test_returns_probabilities": checks.check_returns_probabilities,
}
JUDGED_CELLS = frozenset(_STEP_CHECKS) | frozenset(_CALL_CHECKS) | {
    "test_no_global_vars", "test_works_without_notebook_globals"}


def decide(grade_id: str, answer: object, nb: NotebookNode, reference: Reference,
           lost_reason: str = "", answers: dict | None = None) -> Verdict:
    """The verdict for one graded cell, from the probe's answer (untrusted) and the source.

    ``answers``: every probed cell's answer, for the checks that look past their own
    cell (an unwritten function earns no global-variable points)."""
    if grade_id == "test_no_global_vars":
        unwritten = checks.never_written(calls_in_notebook(answers or {}))
        return Verdict(False, unwritten) if unwritten else check_no_global_vars(nb)
    if not isinstance(answer, dict) or answer.get("cell") != grade_id:
        return Verdict(False, lost_reason or "this check got no answer from the notebook "
                                             "(did the kernel die or stop answering?)")
    if grade_id in _STEP_CHECKS:
        variables = answer.get("variables")
        return _STEP_CHECKS[grade_id](variables if isinstance(variables, dict) else {},
                                      reference)
    if answer.get("defined") is not True:
        return Verdict(False, "predict_next_tokens is not defined (or not a function) when "
                              "this test runs")
    if grade_id in _CALL_CHECKS:
        specs = probe.CALLS[grade_id]
        return _CALL_CHECKS[grade_id](parse_calls(specs, answer.get("calls")), reference)
    in_notebook = parse_calls(probe.ISOLATED_CALLS, answer.get("calls"))
    settings = answer.get("isolated")
    settings = settings if isinstance(settings, list) else []
    parsed = [None if s is None else parse_calls(probe.ISOLATED_CALLS, s) for s in settings[:2]]
    if len(parsed) < 2:
        parsed += [[parse_call(spec, None) for spec in probe.ISOLATED_CALLS]] * (2 - len(parsed))
    return checks.check_works_without_notebook_globals(in_notebook, parsed)


def calls_in_notebook(answers: dict) -> list[Call]:
    """Every call the probes made to the function in the notebook (not the isolated
    ones), parsed; cells whose answer is missing give none."""
    specs = {**probe.CALLS, "test_works_without_notebook_globals": probe.ISOLATED_CALLS}
    calls: list[Call] = []
    for grade_id, cell_specs in specs.items():
        answer = answers.get(grade_id)
        if isinstance(answer, dict) and answer.get("cell") == grade_id and answer.get("defined"):
            calls += parse_calls(cell_specs, answer.get("calls"))
    return calls


def verdict_outputs(verdict: Verdict) -> list[NotebookNode]:
    """What a graded cell shows after judging; nbgrader scores an error output as 0."""
    if verdict.passed:
        return [NotebookNode(output_type="stream", name="stdout",
                             text=f"Passed: {verdict.message}\n")]
    return [NotebookNode(output_type="error", ename="CheckFailed", evalue=verdict.message,
                         traceback=[f"CheckFailed: {verdict.message}"])]


_reference: Reference | None = None


def reference() -> Reference:
    """The grader's model and tokenizer, loaded once per process."""
    global _reference
    if _reference is None:
        from transformers.utils import logging as transformers_logging

        import lmlogits

        transformers_logging.disable_progress_bar()  # no loading bar in the grading log
        model, tokenizer = lmlogits.load_model_and_tokenizer()
        _reference = Reference(tokenizer, model)
    return _reference


class Judge(NbGraderPreprocessor):
    """Set every judged cell's outputs from the grader's verdict (after execution)."""

    def preprocess(self, nb, resources):
        from lmlogits_grader.execute import write_timings

        started = time.perf_counter()
        reference()  # loaded once per process; not part of a submission's cost
        started_judging = time.perf_counter()
        nb, resources = self._judge(nb, resources)
        done = time.perf_counter()
        write_timings({"model load (once)": started_judging - started,
                       "judge": done - started_judging})
        return nb, resources

    def _judge(self, nb, resources):
        probes = nb.metadata.pop(PROBES_KEY, None)
        probes = probes if isinstance(probes, dict) else {}
        answers = probes.get("answers") if isinstance(probes.get("answers"), dict) else {}
        lost_reason = _text(probes.get("lost_reason"), 300) or ""
        broken = nb.metadata.get(BROKEN_KEY)
        for cell in nb.cells:
            if cell.cell_type != "code" or not utils.is_grade(cell):
                continue
            grade_id = cell.metadata.nbgrader.get("grade_id")
            if grade_id not in JUDGED_CELLS:
                continue
            if broken:
                verdict = Verdict(False, f"this submission could not be graded: {broken}")
            else:
                verdict = decide(grade_id, answers.get(grade_id), nb, reference(), lost_reason,
                                 answers)
            cell.outputs = verdict_outputs(verdict)
            if grade_id in probe.FUNCTION_CELLS and not broken:
                cell.outputs.insert(0, NotebookNode(
                    output_type="stream", name="stdout", text=HIDDEN_OUTPUT_NOTE + "\n"))
        return nb, resources
