"""Catch functions that secretly read notebook global variables.

In a notebook, a function such as ``predict_next_tokens(phrase, k)`` can "work" only
because a cell above happened to leave ``phrase`` or ``last_token_logits`` lying around
as global variables. :func:`check_global_vars` finds such hidden dependencies without
calling the function: it walks the function's bytecode with :mod:`dis`, including the
code of nested comprehensions, generator expressions, lambdas, nested functions and
classes, and looks at every name that Python would look up in the globals.

Only opcode *names* and decoded arguments (``instr.opname``, ``instr.argval``) are used,
never raw arguments, so the walker reads the bytecode of Python 3.10 to 3.13 alike
(3.12 inlines list comprehensions, 3.13 re-encodes ``LOAD_GLOBAL``).
"""

from __future__ import annotations

import builtins
import dis
import inspect
import linecache
import reprlib
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["check_global_vars"]

# Opcodes that read a name from the globals (or builtins). LOAD_NAME only appears in
# class bodies nested in a function; LOAD_FROM_DICT_OR_GLOBALS is its 3.12+ cousin.
_GLOBAL_READ_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"})
# Opcodes that change a global: the function body said ``global x``.
_GLOBAL_WRITE_OPS = frozenset({"STORE_GLOBAL", "DELETE_GLOBAL"})
# Opcodes that bind a name locally inside a class body.
_CLASS_BODY_STORE_OPS = frozenset({"STORE_NAME", "DELETE_NAME"})

# Built-ins that can read global variables by name, invisibly to a bytecode walk.
_DYNAMIC_LOOKUP_REASONS: Mapping[str, str] = {
    "globals": "`globals()` can read any notebook variable by name",
    "vars": "`vars()` can read variables by name, including the notebook's",
    "eval": "`eval()` runs code that can read any notebook variable",
    "exec": "`exec()` runs code that can read and change any notebook variable",
}

# Names a Jupyter kernel puts in the notebook's namespace itself, standing for its own
# versions of built-ins (``open``, ``exit``, ``quit``) or for its helpers; using them is
# like using a built-in, as long as the notebook has not rebound them.
_KERNEL_NAMES = frozenset({"open", "exit", "quit", "get_ipython", "display"})
_KERNEL_MODULES = frozenset({"IPython", "ipykernel", "io", "_io"})
_MAX_SOURCE_CHARS = 80
_FIX = "Pass it in as a parameter, or compute it inside the function."

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


@dataclass(frozen=True)
class _NameUse:
    """One place where the function's bytecode touches a global name."""

    name: str
    filename: str
    lineno: int | None
    is_write: bool


def check_global_vars(func: Callable[..., Any], allowed_globals: Iterable[str] = ()) -> None:
    """Check that ``func`` does not read notebook (module) global variables by accident.

    The function is never called: its bytecode is inspected, including nested
    comprehensions, generator expressions, lambdas and inner functions. A name is
    fine when it is a parameter or local variable, a variable of an enclosing function,
    an un-shadowed Python built-in (``len``, ``range``, ...), a name listed in
    ``allowed_globals``, or the function's own name (recursion). Attribute names
    (``batch.input_ids``) and string keys (``batch["input_ids"]``) are never globals.

    Args:
        func: The function to check, e.g. ``predict_next_tokens``.
        allowed_globals: Names the function may take from the notebook, e.g.
            ``["torch", "tokenizer", "pd", "model"]``.

    Returns:
        None when the function only uses allowed outside names.

    Raises:
        AssertionError: The function uses other outside names. The message has one
            bullet per name with the line that uses it and how to fix it. It also
            covers global variables that hide a built-in (``input = ...``), names that
            are not defined anywhere (calling the function would raise ``NameError``),
            ``global`` writes, and ``globals()``, ``vars()``, ``eval()`` and
            ``exec()``, which can read any global by name.
        TypeError: ``func`` is not a Python function, or ``allowed_globals`` is not an
            iterable of strings (a single string such as ``"torch"`` is rejected).

    Examples:
        >>> tokenizer = str.split
        >>> def count_tokens(text):
        ...     return len(tokenizer(text))
        >>> check_global_vars(count_tokens, allowed_globals=["tokenizer"])
        >>> phrase = "The capital of France is"
        >>> def count_phrase_tokens(text):
        ...     return len(tokenizer(phrase))
        >>> check_global_vars(count_phrase_tokens, allowed_globals=["tokenizer"])
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        AssertionError: `count_phrase_tokens` should only use its parameters ...
        - `phrase` on line 2 (`return len(tokenizer(phrase))`): a notebook variable, ...
        ...
    """
    function = _validate_func(_unwrap(func))
    allowed = _validate_allowed_globals(allowed_globals)

    uses_by_name: dict[str, list[_NameUse]] = {}
    for use in _iter_global_uses(function.__code__):
        if use.name not in allowed:
            uses_by_name.setdefault(use.name, []).append(use)

    builtins_ns = _builtins_namespace(function)
    bullets: list[tuple[int, str, str]] = [*_default_problems(function), *_main_imports(function)]
    for name, uses in uses_by_name.items():
        reason = _problem_with(name, uses, function, builtins_ns)
        if reason is not None:
            first_line = min((u.lineno for u in uses if u.lineno is not None), default=0)
            bullets.append((first_line, name, f"- `{name}` on {_where(uses)}: {reason}"))

    if bullets:
        raise AssertionError(_build_message(function, sorted(bullets), allowed))


def _unwrap(func: Any) -> Any:
    """The function a decorator wrapped (``@torch.no_grad()``), else ``func`` itself."""
    try:
        return inspect.unwrap(func) if callable(func) else func
    except ValueError:  # a __wrapped__ cycle: leave it to _validate_func
        return func


# Default values that cannot smuggle in notebook state.
_PLAIN_DEFAULTS = (type(None), bool, int, float, complex, str, bytes)


def _is_plain(value: object) -> bool:
    if isinstance(value, tuple | frozenset):
        return all(_is_plain(item) for item in value)
    return isinstance(value, _PLAIN_DEFAULTS)


def _default_problems(func: types.FunctionType) -> Iterator[tuple[int, str, str]]:
    """Parameters whose default value was computed in the notebook when ``def`` ran.

    ``def f(phrase, k, probs=last_token_probabilities)`` reads the notebook variable
    once, at definition time, where the bytecode walk cannot see it.
    """
    code = func.__code__
    positional = code.co_varnames[: code.co_argcount]
    defaults = dict(zip(positional[len(positional) - len(func.__defaults__ or ()) :],
                        func.__defaults__ or (), strict=True))
    defaults.update(func.__kwdefaults__ or {})
    line = code.co_firstlineno
    for name, value in defaults.items():
        if not _is_plain(value):
            yield (
                line,
                name,
                f"- parameter `{name}` on line {line} has a default value computed in the "
                f"notebook ({_repr.repr(value)} of type {type(value).__name__}): the "
                "function would keep using it. Remove the default and pass the value in, "
                "or compute it inside the function.",
            )


def _main_imports(func: types.FunctionType) -> Iterator[tuple[int, str, str]]:
    """``import __main__`` inside the function reaches every notebook variable."""
    for code in _iter_code_objects(func.__code__):
        instructions = list(dis.get_instructions(code))
        for instr, lineno in _with_line_numbers(code, instructions):
            if instr.opname == "IMPORT_NAME" and str(instr.argval).split(".")[0] == "__main__":
                line = lineno or code.co_firstlineno
                yield (
                    line,
                    "__main__",
                    f"- `import __main__` on line {line}: `__main__` is the notebook itself, "
                    "so the function can read any notebook variable through it. "
                    "Use parameters and local variables directly.",
                )


def _validate_func(func: Any) -> types.FunctionType:
    """Return ``func`` if it is a Python function, else raise ``TypeError``."""
    if not isinstance(func, types.FunctionType):
        raise TypeError(
            "check_global_vars(): `func` must be a Python function written with `def` or "
            f"`lambda`, but got {_repr.repr(func)} of type {type(func).__name__}."
        )
    return func


def _validate_allowed_globals(allowed_globals: Any) -> frozenset[str]:
    """Return ``allowed_globals`` as a set of names, or raise ``TypeError``."""
    shown = f"{_repr.repr(allowed_globals)} of type {type(allowed_globals).__name__}"
    example = 'e.g. allowed_globals=["torch", "tokenizer"]'
    if isinstance(allowed_globals, (str, bytes)):
        raise TypeError(
            "check_global_vars(): `allowed_globals` must be a list of names, not a single "
            f"string ({example}), but got {shown}."
        )
    try:
        names = list(allowed_globals)
    except TypeError:
        raise TypeError(
            "check_global_vars(): `allowed_globals` must be an iterable of strings "
            f"({example}), but got {shown}."
        ) from None
    for name in names:
        if not isinstance(name, str):
            raise TypeError(
                "check_global_vars(): `allowed_globals` must contain only strings, but "
                f"it contains {_repr.repr(name)} of type {type(name).__name__} "
                f"(allowed_globals={_repr.repr(names)})."
            )
    return frozenset(names)


def _iter_code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    """Yield ``code`` and, recursively, every code object nested in its constants."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _iter_code_objects(const)


def _iter_global_uses(code: types.CodeType) -> Iterator[_NameUse]:
    """Yield every global read or write in ``code`` and its nested code objects."""
    for sub_code in _iter_code_objects(code):
        instructions = list(dis.get_instructions(sub_code))
        class_body_locals = {
            instr.argval for instr in instructions if instr.opname in _CLASS_BODY_STORE_OPS
        }
        for instr, lineno in _with_line_numbers(sub_code, instructions):
            if instr.opname in _GLOBAL_WRITE_OPS:
                is_write = True
            elif instr.opname in _GLOBAL_READ_OPS:
                is_write = False
                # In a class body, LOAD_NAME also finds the class's own attributes, and
                # every class body starts with `__module__ = __name__`.
                if instr.opname == "LOAD_NAME" and (
                    instr.argval in class_body_locals or instr.argval == "__name__"
                ):
                    continue
            else:
                continue
            yield _NameUse(str(instr.argval), sub_code.co_filename, lineno, is_write)


def _with_line_numbers(
    code: types.CodeType, instructions: list[dis.Instruction]
) -> Iterator[tuple[dis.Instruction, int | None]]:
    """Pair each instruction with its source line number (None when unknown).

    ``dis.findlinestarts`` exists on every supported Python (3.13 may report ``None``
    for compiler-generated instructions; those keep the previous line).
    """
    line_starts = sorted(dis.findlinestarts(code))
    next_start = 0
    lineno: int | None = None
    for instr in instructions:
        while next_start < len(line_starts) and line_starts[next_start][0] <= instr.offset:
            start_line = line_starts[next_start][1]
            if start_line is not None:
                lineno = start_line
            next_start += 1
        yield instr, lineno


def _builtins_namespace(func: types.FunctionType) -> Mapping[str, Any]:
    """Return the built-ins the function sees (IPython may add some, e.g. ``display``)."""
    func_builtins = getattr(func, "__builtins__", None)
    if isinstance(func_builtins, Mapping):
        return func_builtins
    if isinstance(func_builtins, types.ModuleType):
        return vars(func_builtins)
    return vars(builtins)


def _provided_by_the_kernel(name: str, value: Any) -> bool:
    """Whether ``value`` is what a Jupyter kernel itself binds to ``name``."""
    if name not in _KERNEL_NAMES or not callable(value):
        return False
    module = getattr(value, "__module__", None)
    return isinstance(module, str) and module.split(".")[0] in _KERNEL_MODULES


def _problem_with(
    name: str,
    uses: list[_NameUse],
    func: types.FunctionType,
    builtins_ns: Mapping[str, Any],
) -> str | None:
    """Explain what is wrong with using global ``name``, or return None if it is fine."""
    if any(use.is_write for use in uses):
        return (
            f"the function changes the notebook variable `{name}` (with `global {name}`). "
            "Return the value instead, and compute what you need inside the function."
        )
    if name in func.__globals__:
        value = func.__globals__[name]
        if name == func.__name__ and _is_same_function(value, func):
            return None  # recursion: the function calls itself
        if _provided_by_the_kernel(name, value):
            return None  # the kernel's own `open`, `display`, ...: like a built-in
        if name in builtins_ns:
            return (
                f"a notebook variable that shadows (hides) Python's built-in `{name}`. "
                f"{_FIX} Better still, give it a name that is not a built-in."
            )
        if isinstance(value, types.ModuleType):
            module_name = value.__name__
            import_line = (
                f"import {name}" if module_name == name else f"import {module_name} as {name}"
            )
            return (
                "a module imported in the notebook. Import it inside the function "
                f"(`{import_line}`), or pass it in as a parameter."
            )
        return f"a notebook variable, not something the function received or computed. {_FIX}"
    if name in builtins_ns:
        if name in _DYNAMIC_LOOKUP_REASONS:
            return (
                f"{_DYNAMIC_LOOKUP_REASONS[name]}, so the function may depend on notebook "
                "variables without naming them. Use parameters and local variables directly."
            )
        return None  # an ordinary built-in such as len or range
    return (
        "undefined: it is not a parameter, a local variable, a notebook variable or a "
        "built-in, so calling the function will raise NameError. Check the spelling, or "
        "define it inside the function."
    )


def _is_same_function(value: object, func: types.FunctionType) -> bool:
    """Tell whether the global ``value`` is ``func`` itself, possibly decorated."""
    if value is func:
        return True
    try:
        return inspect.unwrap(value) is func  # type: ignore[arg-type]
    except Exception:  # a strange object (e.g. a mock) with an endless __wrapped__ chain
        return False


def _where(uses: list[_NameUse]) -> str:
    """Describe where a name is used: first line with its source text, then other lines."""
    line_numbers = [use.lineno for use in uses if use.lineno is not None]
    if not line_numbers:
        return "an unknown line"
    first_line = min(line_numbers)
    first = next(use for use in uses if use.lineno == first_line)
    text = f"line {first_line}"
    source = _source_line(first.filename, first_line)
    if source:
        text += f" (`{source}`)"
    other_lines = sorted({line for line in line_numbers if line != first_line})
    if other_lines:
        label = "line" if len(other_lines) == 1 else "lines"
        text += f", also {label} {', '.join(str(line) for line in other_lines)}"
    return text


def _source_line(filename: str, lineno: int) -> str:
    """Return the stripped, shortened source of a line, or "" if it is not available.

    IPython registers every executed cell in :mod:`linecache`, so this works in notebooks.
    """
    try:
        line = linecache.getline(filename, lineno).strip()
    except Exception:  # a broken loader or file must never break the check
        return ""
    if len(line) > _MAX_SOURCE_CHARS:
        line = line[: _MAX_SOURCE_CHARS - 3].rstrip() + "..."
    return line


def _build_message(
    func: types.FunctionType, bullets: list[tuple[int, str, str]], allowed: frozenset[str]
) -> str:
    """Assemble the student-facing AssertionError message."""
    lines = [
        f"`{func.__name__}` should only use its parameters and values it computes itself, "
        "but it uses these names from outside the function:",
        *(bullet for _, _, bullet in bullets),
    ]
    builtins_text = "Python built-ins such as len and range."
    if allowed:
        lines.append(
            f"Allowed from outside the function: {', '.join(sorted(allowed))}, and {builtins_text}"
        )
    else:
        lines.append(f"Allowed from outside the function: only {builtins_text}")
    return "\n".join(lines)
