"""The ``python`` tool on ordinary programs: answers, errors the model can fix, limits, the tool contract.
(Escape attempts and bombs are in tests/security/test_sandbox_escapes.py.)"""

from __future__ import annotations

import statistics
import time

import pytest
from langchain_tests.unit_tests import ToolsUnitTests

from orchard.tools.base import ToolFailed, ToolRefused, run_tool
from orchard.tools.python_sandbox import PythonTool, SandboxLimits, SandboxResult, run_python


def test_sum_of_squares() -> None:
    result = run_python("print(sum(n * n for n in range(1, 101)))")
    assert result == SandboxResult(True, "338350\n", None, result.seconds)
    assert result.killed is None and not result.refused


def test_math_statistics_fractions_decimal() -> None:
    code = (
        "import math, statistics\n"
        "from fractions import Fraction\n"
        "from decimal import Decimal\n"
        "print(math.comb(10, 3), statistics.median([3, 1, 2, 8]), Fraction(1, 3) + Fraction(1, 6), Decimal('0.1') * 3)\n"
    )
    assert run_python(code).output == "120 2.5 1/2 0.3\n"


def test_other_standard_modules_and_classes() -> None:
    code = (
        "import collections, dataclasses, datetime, enum, json, re, random, hashlib, itertools\n"
        "Point = collections.namedtuple('Point', 'x y')\n"
        "@dataclasses.dataclass\n"
        "class Tree:\n"
        "    name: str\n"
        "class Colour(enum.Enum):\n"
        "    RED = 1\n"
        "random.seed(0)\n"
        "print(Point(1, 2), Tree('plum'), Colour.RED, (datetime.date(2024, 3, 1) - datetime.date(2024, 2, 1)).days,\n"
        "      json.dumps({'a': [1]}), re.findall(r'\\d+', 'a1b22'), hashlib.sha256(b'').hexdigest()[:6],\n"
        "      list(itertools.pairwise('abc')))\n"
    )
    result = run_python(code)
    assert result.ok, result.error
    assert result.output == (
        "Point(x=1, y=2) Tree(name='plum') Colour.RED 29 {\"a\": [1]} ['1', '22'] e3b0c4 [('a', 'b'), ('b', 'c')]\n"
    )


def test_a_final_expression_is_shown_when_nothing_was_printed() -> None:
    assert run_python("x = 6\nx * 7").output == "42\n"
    assert run_python("print('only this')\n1 + 1").output == "only this\n"
    assert run_python("None").output == ""


def test_an_exception_fails_with_the_program_line() -> None:
    result = run_python("def ratio(a, b):\n    return a / b\n\nprint(ratio(1, 0))\n")
    assert not result.ok and not result.refused and result.killed is None
    assert result.error == (
        "Traceback (most recent call last):\n"
        '  File "<program>", line 4, in <module>\n'
        "    print(ratio(1, 0))\n"
        '  File "<program>", line 2, in ratio\n'
        "    return a / b\n"
        "ZeroDivisionError: division by zero"
    )


def test_a_syntax_error_points_at_the_line() -> None:
    result = run_python("x = 1\nprint(x +)\n")
    assert not result.ok
    assert 'File "<program>", line 2' in result.error and "SyntaxError" in result.error


def test_output_is_capped() -> None:
    result = run_python("for i in range(100_000):\n    print(i)", limits=SandboxLimits(output_bytes=1000))
    assert result.ok
    assert result.output.startswith("0\n1\n2\n") and result.output.endswith("\n[output truncated]")
    assert len(result.output) == 1000 + len("\n[output truncated]")


def test_files_in_the_current_folder_work() -> None:
    code = (
        "import os, csv\n"
        "with open('trees.csv', 'w', newline='') as f:\n"
        "    csv.writer(f).writerows([['apple', 3], ['plum', 4]])\n"
        "os.mkdir('sub')\n"
        "os.rename('trees.csv', 'sub/trees.csv')\n"
        "with open('sub/trees.csv') as f:\n"
        "    print(sum(int(row[1]) for row in csv.reader(f)), sorted(os.listdir('.')))\n"
    )
    result = run_python(code)
    assert result.ok, result.error
    assert result.output == "7 ['sub']\n"


def test_the_scratch_folder_is_fresh_each_time() -> None:
    assert run_python("open('left-over', 'w').write('x')").ok
    assert run_python("import os\nprint(os.listdir('.'))").output == "[]\n"


def test_a_refused_operation_names_what_and_where() -> None:
    result = run_python("x = 1\ndata = open('/etc/passwd').read()\n")
    assert result.refused and not result.ok
    assert result.error.startswith("reading /etc/passwd is not allowed in the sandbox")
    assert result.error.endswith("(line 2)")


def test_printed_output_is_kept_when_the_program_fails() -> None:
    result = run_python("print('step 1')\nraise ValueError('bad input')")
    assert result.output == "step 1\n" and "ValueError: bad input" in result.error


def test_a_trivial_program_round_trips_well_under_a_second() -> None:
    times = []
    for _ in range(5):
        started = time.monotonic()
        assert run_python("print(1 + 1)").output == "2\n"
        times.append(time.monotonic() - started)
    assert statistics.median(times) < 1.0, times


# -- The tool ------------------------------------------------------------------------------------------


def test_tool_returns_the_printed_output() -> None:
    tool = PythonTool()
    assert tool.invoke({"code": "print(sum(n * n for n in range(1, 101)))"}) == "338350"
    assert tool.invoke({"code": "x = 1"}) == "(the program printed nothing: print() the answer)"


def test_tool_raises_the_contract_exceptions() -> None:
    tool = PythonTool()
    with pytest.raises(ToolRefused, match=r"^reading /etc/passwd is not allowed in the sandbox"):
        tool._run("print(open('/etc/passwd').read())")
    with pytest.raises(ToolFailed, match=r"ZeroDivisionError") as failed:
        tool._run("print('half way')\n1 / 0")
    assert "half way" in str(failed.value)
    with pytest.raises(ToolFailed, match=r"^stopped: the program used more than 1 s of CPU time"):
        PythonTool(limits=SandboxLimits(cpu_seconds=1))._run("while True:\n    pass")


def test_tool_errors_come_back_as_text_inside_an_agent() -> None:
    tool = PythonTool()
    assert tool.invoke({"code": "import socket"}).startswith("refused: importing socket is not allowed")
    assert tool.invoke({"code": "1 / 0"}).startswith("error: Traceback")
    assert tool.invoke({"program": "print(1)"}).startswith("error: bad arguments:")


def test_run_tool_shapes() -> None:
    tool = PythonTool()
    assert run_tool(tool, {"code": "print(2 ** 10)"}) == {"ok": True, "output": "1024", "error": None}
    refused = run_tool(tool, {"code": "import os\nos.system('id')"})
    assert refused["ok"] is False and refused["output"] == ""
    assert refused["error"] == "refused: starting processes (os.system) is not allowed in the sandbox (line 2)"
    failed = run_tool(tool, {"code": "int('x')"})
    assert failed["ok"] is False and failed["error"].startswith("error: Traceback")
    assert failed["error"].endswith("ValueError: invalid literal for int() with base 10: 'x'")
    assert run_tool(tool, {})["error"].startswith("error: bad arguments:")


async def test_tool_async() -> None:
    assert await PythonTool().ainvoke({"code": "print(6 * 7)"}) == "42"


def test_tool_description_tells_the_model_how_to_use_it() -> None:
    description = PythonTool().description
    for words in ("complete program", "print()", "standard library", "math", "statistics", "No network"):
        assert words in description


class TestPythonToolStandard(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[PythonTool]:
        return PythonTool

    @property
    def tool_constructor_params(self) -> dict:
        return {"limits": SandboxLimits(cpu_seconds=2, wall_seconds=5)}

    @property
    def tool_invoke_params_example(self) -> dict:
        return {"code": "print(sum(n * n for n in range(1, 101)))"}
