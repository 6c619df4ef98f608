"""An nbgrader preprocessor that turns solution regions into blanks with hints.

nbgrader's ``ClearSolutions`` replaces every ``### BEGIN SOLUTION`` ... ``### END
SOLUTION`` region with the same stub. This one keeps the region's hint lines, written
in the source as ``# HINT <text>``, as comments, then raises ``NotImplementedError``, so
that every blank is valid Python, shows the course's partial-code hints, and "Run all"
stops at the first unfilled blank with a clear message::

    ### BEGIN SOLUTION                        # batch = tokenizer(ph..., return_tensors="pt")
    # HINT batch = tokenizer(ph..., ...)  ->   raise NotImplementedError("Step blank: ...")
    batch = tokenizer(phrase, ...)
    ### END SOLUTION

Registered in ``autograder/nbgrader_config.py`` in place of ``ClearSolutions``.
"""

from __future__ import annotations

import re

from nbgrader.preprocessors import ClearSolutions

HINT_MARK = "# HINT"
BLANK_MESSAGE = "Fill in this blank: replace this line with your code (see the hint above it)."


def strip_hints(source: str) -> str:
    """Remove ``# HINT`` lines (for the solution copy, where the code itself is shown)."""
    return "\n".join(line for line in source.split("\n") if not is_hint(line))


def is_hint(line: str) -> bool:
    return line.strip().startswith(HINT_MARK)


class HintedBlanks(ClearSolutions):
    """``ClearSolutions`` whose code stub keeps the region's ``# HINT`` lines."""

    def _replace_solution_region(self, cell, language: str) -> bool:
        if cell.cell_type != "code":
            return super()._replace_solution_region(cell, language)
        new_lines: list[str] = []
        in_solution = False
        replaced = False
        for line in cell.source.split("\n"):
            if self.begin_solution_delimeter in line:
                if in_solution:
                    raise RuntimeError("encountered nested begin solution statements")
                in_solution = replaced = True
                indent = re.match(r"\s*", line).group(0)
                hints: list[str] = []
            elif self.end_solution_delimeter in line:
                if not in_solution:
                    raise RuntimeError("END SOLUTION without BEGIN SOLUTION")
                in_solution = False
                new_lines.extend(indent + "# " + hint for hint in hints or ["YOUR CODE HERE"])
                new_lines.append(f"{indent}raise NotImplementedError({BLANK_MESSAGE!r})")
            elif in_solution:
                if is_hint(line):
                    hints.append(line.strip()[len(HINT_MARK) :].strip())
            else:
                new_lines.append(line)
        if in_solution:
            raise RuntimeError("no end solution statement found")
        cell.source = "\n".join(new_lines)
        return replaced
