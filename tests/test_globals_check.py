"""Tests for lmlogits.globals_check.check_global_vars.

Each test builds its function from source text executed in a fresh dict, which plays the
role of the notebook's global namespace, so the test controls exactly which globals exist.
The source is registered in linecache under a cell-like file name, as IPython does for
notebook cells, so the messages can show the offending source line.
"""

from __future__ import annotations

import doctest
import functools
import itertools
import json
import linecache
import re
import textwrap
import types
from typing import Any

import pytest

from lmlogits import globals_check
from lmlogits.globals_check import check_global_vars

COURSE_ALLOWED = ["torch", "tokenizer", "pd", "model"]

_cell_numbers = itertools.count(1)


class _Dummy:
    """Stands in for torch, tokenizer, pd and model: the checker never calls anything."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return f"<dummy {self.label}>"


def course_notebook_globals() -> dict[str, Any]:
    """Globals a student's notebook has after running the exploration cells."""
    return {
        "phrase": "The capital of France is",
        "batch": {"input_ids": [[1, 2, 3]]},
        "input_ids": [[1, 2, 3]],
        "model_output": _Dummy("model_output"),
        "logits": _Dummy("logits"),
        "last_token_logits": _Dummy("last_token_logits"),
        "last_token_probabilities": _Dummy("last_token_probabilities"),
        "torch": _Dummy("torch"),
        "tokenizer": _Dummy("tokenizer"),
        "pd": _Dummy("pd"),
        "model": _Dummy("model"),
    }


def make_function(
    source: str,
    notebook_globals: dict[str, Any] | None = None,
    *,
    register_source: bool = True,
) -> Any:
    """Run ``source`` (one top-level def) in a fresh namespace; return what it defines.

    Line 1 of the cell is the ``def`` line. With ``register_source`` the cell text is put
    in linecache like IPython does; without it the source text cannot be found.
    """
    text = textwrap.dedent(source).lstrip("\n")
    if register_source:
        filename = f"<ipython-input-{next(_cell_numbers)}-test>"
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    else:
        filename = "<string>"
    namespace: dict[str, Any] = dict(notebook_globals or {})
    before = set(namespace)
    exec(compile(text, filename, "exec"), namespace)
    (name,) = [key for key in namespace if key not in before and key != "__builtins__"]
    return namespace[name]


def error_message(func: types.FunctionType, allowed: list[str] | None = None) -> str:
    """Return the AssertionError message of a check that must fail."""
    with pytest.raises(AssertionError) as excinfo:
        check_global_vars(func, allowed_globals=COURSE_ALLOWED if allowed is None else allowed)
    return str(excinfo.value)


def bullets(message: str) -> list[str]:
    return [line for line in message.splitlines() if line.startswith("- ")]


# --- the course solution ---------------------------------------------------------------

COURSE_SOLUTION = """
def predict_next_tokens(phrase, k):
    batch = tokenizer(phrase, return_tensors="pt")
    with torch.no_grad():
        model_output = model(**batch)
    last_token_logits = model_output.logits[0, -1, :]
    last_token_probabilities = last_token_logits.softmax(dim=-1)
    top = torch.topk(last_token_probabilities, k)
    tokens = [tokenizer.decode(i) for i in top.indices]
    return pd.DataFrame({"tokens": tokens, "probabilities": top.values.tolist()})
"""


def test_course_solution_passes_with_all_notebook_globals_present() -> None:
    func = make_function(COURSE_SOLUTION, course_notebook_globals())
    assert check_global_vars(func, allowed_globals=COURSE_ALLOWED) is None


def test_course_solution_reading_global_phrase_fails_naming_it() -> None:
    source = COURSE_SOLUTION.replace(
        "def predict_next_tokens(phrase, k)", "def predict_next_tokens(text, k)"
    )
    func = make_function(source, course_notebook_globals())
    with pytest.raises(AssertionError, match=r"- `phrase` on line 2 \(`batch = tokenizer\(phrase,"):
        check_global_vars(func, allowed_globals=COURSE_ALLOWED)
    assert len(bullets(error_message(func))) == 1


def test_course_solution_reading_global_probabilities_fails_naming_it() -> None:
    source = COURSE_SOLUTION.replace(
        "    last_token_probabilities = last_token_logits.softmax(dim=-1)\n", ""
    )
    func = make_function(source, course_notebook_globals())
    with pytest.raises(
        AssertionError,
        match=re.escape(
            "- `last_token_probabilities` on line 6 "
            "(`top = torch.topk(last_token_probabilities, k)`)"
        ),
    ):
        check_global_vars(func, allowed_globals=COURSE_ALLOWED)
    assert len(bullets(error_message(func))) == 1


def test_course_solution_reading_both_globals_gets_one_bullet_each_in_line_order() -> None:
    source = COURSE_SOLUTION.replace("(phrase, k)", "(text, k)").replace(
        "    last_token_logits = model_output.logits[0, -1, :]\n", ""
    )
    func = make_function(source, course_notebook_globals())
    names = [re.match(r"- `(\w+)`", b).group(1) for b in bullets(error_message(func))]
    assert names == ["phrase", "last_token_logits"]


# --- top-level globals -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["phrase", "last_token_logits"])
def test_global_read_at_top_level_is_flagged_with_line_source_and_fix(name: str) -> None:
    func = make_function(
        f"""
        def predict_next_tokens(text, k):
            value = {name}
            return value
        """,
        course_notebook_globals(),
    )
    message = error_message(func)
    assert bullets(message) == [
        f"- `{name}` on line 2 (`value = {name}`): a notebook variable, not something the "
        "function received or computed. Pass it in as a parameter, or compute it inside "
        "the function."
    ]
    assert message.startswith("`predict_next_tokens` should only use its parameters")
    assert message.endswith(
        "Allowed from outside the function: model, pd, tokenizer, torch, "
        "and Python built-ins such as len and range."
    )


def test_full_message_verbatim() -> None:
    func = make_function(
        """
        def predict_next_tokens(text, k):
            return tokenizer(phrase)[:k]
        """,
        course_notebook_globals(),
    )
    assert error_message(func) == (
        "`predict_next_tokens` should only use its parameters and values it computes itself, "
        "but it uses these names from outside the function:\n"
        "- `phrase` on line 2 (`return tokenizer(phrase)[:k]`): a notebook variable, not "
        "something the function received or computed. Pass it in as a parameter, or compute "
        "it inside the function.\n"
        "Allowed from outside the function: model, pd, tokenizer, torch, "
        "and Python built-ins such as len and range."
    )


def test_repeated_use_reports_first_line_and_other_lines() -> None:
    func = make_function(
        """
        def f(k):
            a = phrase
            b = 1
            c = phrase + phrase
            return [phrase for _ in range(k)], a, b, c
        """,
        {"phrase": "x"},
    )
    with pytest.raises(
        AssertionError, match=r"`phrase` on line 2 \(`a = phrase`\), also lines 4, 5:"
    ):
        check_global_vars(func, allowed_globals=[])


def test_first_line_is_the_earliest_even_when_it_is_in_nested_code() -> None:
    # The walker visits the outer code before the lambda's code; the report must not care.
    func = make_function(
        """
        def f(k):
            get = lambda: phrase
            return phrase, get
        """,
        {"phrase": "x"},
    )
    with pytest.raises(
        AssertionError, match=r"`phrase` on line 2 \(`get = lambda: phrase`\), also line 3:"
    ):
        check_global_vars(func, allowed_globals=[])


def test_line_inside_a_multi_line_statement_is_the_line_of_the_name() -> None:
    func = make_function(
        """
        def f(k):
            return dict(
                tokens=k,
                probabilities=last_token_probabilities,
            )
        """,
        course_notebook_globals(),
    )
    with pytest.raises(
        AssertionError,
        match=r"`last_token_probabilities` on line 4 \(`probabilities=last_token_probabilities,`\)",
    ):
        check_global_vars(func, allowed_globals=[])


def test_without_source_text_the_line_number_is_still_given() -> None:
    func = make_function(
        """
        def f(k):
            return phrase
        """,
        {"phrase": "x"},
        register_source=False,
    )
    with pytest.raises(AssertionError, match=r"- `phrase` on line 2: a notebook variable"):
        check_global_vars(func, allowed_globals=[])


def test_long_source_lines_are_shortened() -> None:
    long_tail = " + ".join(["k"] * 40)
    func = make_function(
        f"""
        def f(k):
            return phrase + {long_tail}
        """,
        {"phrase": "x"},
    )
    (bullet,) = bullets(error_message(func, []))
    shown = re.search(r"\(`(.*?)`\)", bullet).group(1)
    assert shown.startswith("return phrase + k + k")
    assert shown.endswith("...")
    assert len(shown) <= 80


def test_function_from_a_real_file_shows_its_source_line() -> None:
    # _reads_module_global is defined in this test file, which linecache reads from disk.
    with pytest.raises(
        AssertionError,
        match=r"`_MODULE_LEVEL_VALUE` on line \d+ \(`return k \+ _MODULE_LEVEL_VALUE`\)",
    ):
        check_global_vars(_reads_module_global, allowed_globals=[])


_MODULE_LEVEL_VALUE = 3


def _reads_module_global(k: int) -> int:
    return k + _MODULE_LEVEL_VALUE


# --- nested code objects -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line"),
    [
        pytest.param("return [x + phrase for x in range(k)]", 2, id="list-comprehension"),
        pytest.param("return {x: phrase for x in range(k)}", 2, id="dict-comprehension"),
        pytest.param("return {phrase for _ in range(k)}", 2, id="set-comprehension"),
        pytest.param("return sum(len(phrase) for _ in range(k))", 2, id="generator-expression"),
        pytest.param("return [[phrase for _ in range(k)] for _ in range(k)]", 2, id="nested-comp"),
        pytest.param("return [x for x in range(k) if x == phrase]", 2, id="comprehension-filter"),
        pytest.param("get = lambda: phrase\n    return get()", 2, id="lambda"),
        pytest.param("def inner():\n        return phrase\n    return inner()", 3, id="nested-def"),
        pytest.param(
            "def outer():\n        def inner():\n            return [phrase for _ in range(k)]\n"
            "        return inner\n    return outer()()",
            4,
            id="doubly-nested-def",
        ),
        pytest.param(
            "class Holder:\n        value = phrase\n    return Holder.value", 3, id="class-body"
        ),
        pytest.param(
            "class Holder:\n        def get(self):\n            return phrase\n"
            "    return Holder().get()",
            4,
            id="method",
        ),
        pytest.param(
            "async def fetch():\n        return phrase\n    return fetch", 3, id="async-def"
        ),
    ],
)
def test_globals_inside_nested_code_are_flagged(body: str, line: int) -> None:
    func = make_function(f"def f(k):\n    {body}\n", {"phrase": "x"})
    message = error_message(func, [])
    assert re.search(rf"- `phrase` on line {line} \(`", message), message
    assert len(bullets(message)) == 1


def test_comprehension_variable_named_like_a_global_is_not_flagged() -> None:
    # On 3.12+ the comprehension is inlined (PEP 709): its variable must stay local.
    func = make_function(
        """
        def f(items):
            firsts = [phrase[0] for phrase in items]
            lengths = (len(phrase) for phrase in items)
            return firsts, list(lengths), (lambda phrase: phrase)(1)
        """,
        {"phrase": "x"},
    )
    assert check_global_vars(func, allowed_globals=[]) is None


def test_class_body_names_are_local_to_the_class() -> None:
    func = make_function(
        """
        def f(k):
            class Config:
                size = k
                double = size * 2
                names = [str(i) for i in range(size)]
            return Config
        """,
        {"size": 10, "double": 20},
    )
    assert check_global_vars(func, allowed_globals=[]) is None


# --- attributes, subscripts, locals, builtins --------------------------------------------


def test_attributes_and_subscript_keys_named_like_globals_are_not_flagged() -> None:
    func = make_function(
        """
        def f(batch, model_output):
            ids = batch.input_ids
            same_ids = batch["input_ids"]
            out = model_output.logits
            return ids, same_ids, out.logits.phrase, model_output.last_token_logits()
        """,
        course_notebook_globals(),
    )
    assert check_global_vars(func, allowed_globals=[]) is None


def test_parameters_locals_builtins_and_allowed_names_are_not_flagged() -> None:
    func = make_function(
        """
        def f(phrase, k=2, *args, last_token_logits=None, **kwargs):
            batch = tokenizer(phrase)
            total = len(batch) + sum(range(k)) + len(args) + len(kwargs)
            for logits in [last_token_logits]:
                total += int(logits or 0)
            try:
                total += max(0, min(1, abs(total)))
            except ValueError as input_ids:
                print(input_ids)
            import math as torch_math
            return model(total), torch_math.pi, pd, torch, isinstance(total, int)
        """,
        course_notebook_globals(),
    )
    assert check_global_vars(func, allowed_globals=COURSE_ALLOWED) is None


def test_closure_variable_of_an_enclosing_function_is_not_flagged() -> None:
    def make_adder(offset: int) -> Any:
        def add(value: int) -> int:
            return value + offset  # LOAD_DEREF, not a global

        return add

    assert check_global_vars(make_adder(3), allowed_globals=[]) is None


def test_recursion_on_its_own_name_is_not_flagged() -> None:
    func = make_function(
        """
        def countdown(n):
            return [] if n == 0 else [n, *countdown(n - 1)]
        """,
    )
    assert check_global_vars(func, allowed_globals=[]) is None


def test_recursion_through_a_decorator_is_not_flagged() -> None:
    func = make_function(
        """
        @functools.lru_cache(maxsize=None)
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        """,
        {"functools": functools},
    )
    assert check_global_vars(func.__wrapped__, allowed_globals=["functools"]) is None


def test_global_with_the_functions_name_but_another_value_is_flagged() -> None:
    func = make_function(
        """
        def step(n):
            return step(n - 1)
        """,
    )
    func.__globals__["step"] = 42  # the notebook later rebound the name
    with pytest.raises(AssertionError, match=r"- `step` on line 2 .*: a notebook variable"):
        check_global_vars(func, allowed_globals=[])


# --- shadowed builtins, dynamic lookups, undefined names, global writes -------------------


def test_global_shadowing_a_builtin_is_flagged_and_says_so() -> None:
    func = make_function(
        """
        def f(k):
            return tokenizer(input)[:k]
        """,
        {"input": "The capital of France is", "tokenizer": _Dummy("tokenizer")},
    )
    message = error_message(func)
    assert bullets(message) == [
        "- `input` on line 2 (`return tokenizer(input)[:k]`): a notebook variable that "
        "shadows (hides) Python's built-in `input`. Pass it in as a parameter, or compute it "
        "inside the function. Better still, give it a name that is not a built-in."
    ]


def test_names_the_kernel_itself_defines_count_as_builtins() -> None:
    # a real IPython shell's namespace: it binds its own open, exit, quit, get_ipython
    interactiveshell = pytest.importorskip(
        "IPython.core.interactiveshell",
        reason="IPython is not installed here (make test-pythons installs only pytest)")
    InteractiveShell = interactiveshell.InteractiveShell  # noqa: N806

    shell = InteractiveShell.instance()
    try:
        display = __import__("IPython.display", fromlist=["display"]).display
        namespace = {**course_notebook_globals(), "display": display}
        for name in ("open", "exit", "quit", "get_ipython"):
            assert name in shell.user_ns, name
            namespace[name] = shell.user_ns[name]
        func = make_function(
            """
            def predict_next_tokens(phrase, k):
                with open("/dev/null") as handle:
                    handle.read()
                display(phrase)
                if get_ipython() is None:
                    exit()
                return pd.DataFrame({"tokens": [phrase] * k})
            """,
            namespace,
        )
        check_global_vars(func, allowed_globals=COURSE_ALLOWED)  # nothing to report
        # rebound by the notebook, the same names are notebook variables again
        namespace["open"] = "notes.txt"
        rebound = make_function("def f(k):\n    return open[:k]\n", namespace)
        assert "shadows (hides) Python's built-in `open`" in error_message(rebound)
    finally:
        InteractiveShell.clear_instance()


def test_unshadowed_builtin_with_the_same_name_is_fine() -> None:
    func = make_function(
        """
        def f(k):
            return input, list(range(k))
        """,
    )
    assert check_global_vars(func, allowed_globals=[]) is None


@pytest.mark.parametrize(
    ("call", "why"),
    [
        ('globals()["phrase"]', r"`globals\(\)` can read any notebook variable by name"),
        ("vars()", r"`vars\(\)` can read variables by name"),
        ('eval("phrase")', r"`eval\(\)` runs code that can read any notebook variable"),
        ('exec("print(phrase)")', r"`exec\(\)` runs code that can read and change"),
    ],
)
def test_dynamic_global_lookups_are_flagged_with_a_reason(call: str, why: str) -> None:
    func = make_function(f"def f(k):\n    return {call}\n", {"phrase": "x"})
    name = call.split("(")[0]
    with pytest.raises(AssertionError, match=rf"- `{name}` on line 2 \(`return .*`\): {why}"):
        check_global_vars(func, allowed_globals=[])
    assert "without naming them" in error_message(func, [])


def test_undefined_name_is_reported_as_undefined_without_crashing() -> None:
    func = make_function(
        """
        def f(k):
            return tokenizer(prhase)
        """,
        {"tokenizer": _Dummy("tokenizer"), "phrase": "x"},
    )
    message = error_message(func)
    assert bullets(message) == [
        "- `prhase` on line 2 (`return tokenizer(prhase)`): undefined: it is not a parameter, "
        "a local variable, a notebook variable or a built-in, so calling the function will "
        "raise NameError. Check the spelling, or define it inside the function."
    ]


def test_global_write_is_flagged() -> None:
    func = make_function(
        """
        def f(k):
            global calls
            calls += 1
            return k
        """,
        {"calls": 0},
    )
    with pytest.raises(
        AssertionError,
        match=r"- `calls` on line 3 \(`calls \+= 1`\): the function changes the notebook "
        r"variable `calls` \(with `global calls`\)\. Return the value instead",
    ):
        check_global_vars(func, allowed_globals=[])


def test_global_write_creating_a_new_variable_and_global_delete_are_flagged() -> None:
    func = make_function(
        """
        def f(k):
            global result, old
            result = k
            del old
        """,
    )
    message = error_message(func, [])
    assert [b.split(" on ")[0] for b in bullets(message)] == ["- `result`", "- `old`"]
    assert all("with `global " in b for b in bullets(message))


def test_module_global_suggests_importing_inside_the_function() -> None:
    func = make_function(
        """
        def f(k):
            return js.dumps(k)
        """,
        {"js": json},
    )
    with pytest.raises(
        AssertionError, match=r"Import it inside the function \(`import json as js`\)"
    ):
        check_global_vars(func, allowed_globals=[])


def test_every_kind_of_problem_at_once_gets_one_bullet_per_name() -> None:
    func = make_function(
        """
        def f(k):
            a = phrase
            b = [input for _ in range(k)]
            c = lambda: missing_name
            d = eval("1")
            return a, b, c, d, last_token_logits, phrase
        """,
        {"phrase": "x", "input": "y", "last_token_logits": 1},
    )
    message = error_message(func, [])
    names = [re.match(r"- `(\w+)`", b).group(1) for b in bullets(message)]
    assert names == ["phrase", "input", "missing_name", "eval", "last_token_logits"]
    assert message.endswith(
        "Allowed from outside the function: only Python built-ins such as len and range."
    )


# --- allowed_globals forms ---------------------------------------------------------------


@pytest.mark.parametrize(
    "allowed",
    [
        ["phrase"],
        ("phrase",),
        {"phrase"},
        frozenset({"phrase", "other"}),
        (name for name in ["phrase"]),
        {"phrase": "ignored value"},
    ],
    ids=["list", "tuple", "set", "frozenset", "generator", "dict-keys"],
)
def test_allowed_globals_accepts_any_iterable_of_strings(allowed: Any) -> None:
    func = make_function("def f():\n    return phrase\n", {"phrase": "x"})
    assert check_global_vars(func, allowed_globals=allowed) is None


def test_allowed_globals_defaults_to_nothing() -> None:
    func = make_function("def f():\n    return phrase\n", {"phrase": "x"})
    with pytest.raises(AssertionError, match="`phrase`"):
        check_global_vars(func)
    assert check_global_vars(make_function("def g(x):\n    return len(x)\n")) is None


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bad_func", "shown"),
    [
        ("predict_next_tokens", r"'predict_next_tokens' of type str"),
        (len, r"<built-in function len> of type builtin_function_or_method"),
        (None, r"None of type NoneType"),
        (functools.partial(len), r"functools\.partial\(.*\) of type partial"),
    ],
)
def test_func_that_is_not_a_python_function_raises_type_error(bad_func: Any, shown: str) -> None:
    with pytest.raises(TypeError, match=r"`func` must be a Python function .*but got " + shown):
        check_global_vars(bad_func, allowed_globals=COURSE_ALLOWED)


@pytest.mark.parametrize(
    ("bad_allowed", "pattern"),
    [
        (
            "torch",
            r"`allowed_globals` must be a list of names, not a single string .*'torch' of type str",
        ),
        (
            b"torch",
            r"`allowed_globals` must be a list of names, not a single string .*of type bytes",
        ),
        (None, r"`allowed_globals` must be an iterable of strings .*but got None of type NoneType"),
        (5, r"`allowed_globals` must be an iterable of strings .*but got 5 of type int"),
        (
            ["torch", 3],
            re.escape(
                "`allowed_globals` must contain only strings, but it contains 3 of type int "
                "(allowed_globals=['torch', 3])"
            ),
        ),
    ],
)
def test_allowed_globals_that_is_not_an_iterable_of_strings_raises_type_error(
    bad_allowed: Any, pattern: str
) -> None:
    func = make_function("def f(x):\n    return x\n")
    with pytest.raises(TypeError, match=pattern):
        check_global_vars(func, allowed_globals=bad_allowed)


# --- module hygiene ----------------------------------------------------------------------


def test_public_api() -> None:
    assert globals_check.__all__ == ["check_global_vars"]


def test_docstring_examples_run() -> None:
    results = doctest.testmod(globals_check, optionflags=doctest.ELLIPSIS)
    assert results.attempted > 0
    assert results.failed == 0


# --- ways around the bytecode walk --------------------------------------------------


def _notebook(source: str, **globals_) -> dict:
    namespace = {"__name__": "__main__", **globals_}
    exec(compile(source, "<cell>", "exec"), namespace)
    return namespace


def test_a_decorated_function_is_checked_through_its_decorator():
    import functools

    def no_grad(func):  # what @torch.no_grad() does: a functools.wraps wrapper
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            return func(*args, **kwargs)

        return wrapper

    namespace = _notebook(
        "phrase = 'x'\n"
        "@no_grad\n"
        "def predict_next_tokens(text, k):\n"
        "    return tokenizer(phrase)\n",
        no_grad=no_grad,
        tokenizer=str.split,
    )
    with pytest.raises(AssertionError, match=r"`phrase` on line 4"):
        check_global_vars(namespace["predict_next_tokens"], allowed_globals=["tokenizer"])


def test_a_default_value_taken_from_the_notebook_is_flagged():
    namespace = _notebook(
        "last_token_probabilities = [0.5, 0.25]\n"
        "def predict_next_tokens(phrase, k, probs=last_token_probabilities):\n"
        "    return probs[:k]\n"
    )
    with pytest.raises(AssertionError, match=r"parameter `probs` .* default value computed"):
        check_global_vars(namespace["predict_next_tokens"])


def test_plain_default_values_are_fine():
    namespace = _notebook("def f(phrase, k=5, *, sep=' ', tags=('a', None)):\n    return k\n")
    check_global_vars(namespace["f"])


def test_reaching_the_notebook_through_main_is_flagged():
    namespace = _notebook(
        "def predict_next_tokens(text, k):\n"
        "    import __main__\n"
        "    return __main__.phrase\n"
    )
    with pytest.raises(AssertionError, match=r"`import __main__` on line 2"):
        check_global_vars(namespace["predict_next_tokens"])
