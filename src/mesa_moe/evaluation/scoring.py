"""Answer extraction and comparison for the utility benchmarks (GSM8K, MATH-500, HumanEval).

GSM8K (`extract_final_number`, `exact_match_number`): the final answer is the first number after
the last '####' or 'The answer is' when the response has such a marker (the format the prompt asks
for), else the last number in the response (GSM8K's own convention). Numbers compare by value:
thousands separators go ('1,000' == '1000') and '18.00' == '18', but a comma that is not a
thousands separator splits numbers ('1,2' is 1 then 2, never 12).

MATH (`normalize_math_answer`, `math_equal`): both sides go through the same normaliser, modelled
on the MATH paper's `strip_string` (Hendrycks et al. 2021): the content of the last `\\boxed{}`,
no `$`, `\\left`/`\\right`, spacing commands, spaces, degree signs, `\\%` or trailing '.';
`\\dfrac`/`\\tfrac` become `\\frac`; `\\frac12` and `\\sqrt3` get their braces; a lone
`x = ` in front is dropped; and `\\frac{a}{b}` is written `a/b` (numerator or denominator with an
operator in parentheses) so that the LaTeX and the plain form agree. Two answers are equal when
the normalised strings are, or when both are plain rationals of the same value ('0.5' == '1/2').

HumanEval (`extract_code`): see its docstring.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

# A number with proper thousands separators, or plain digits; optional sign and decimals.
NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
FINAL_ANSWER_MARKER = re.compile(r"####|the\s+(?:final\s+)?answer\s+is", re.IGNORECASE)
BOXED = re.compile(r"\\(?:boxed|fbox)")
# An operator in a fraction's numerator or denominator (a leading minus aside) needs
# parentheses in 'a/b' form: \frac{x+1}{2} is (x+1)/2, not x+1/2.
OPERATOR = re.compile(r"[-+*/^=,]")
PLAIN_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
# Top-level lines that start example usage or self-tests after the function (as a model often
# writes them): not part of the solution, and a wrong self-test would fail a right function.
TRAILING_SCAFFOLD = re.compile(r"^(?:if\s+__name__\b|print\(|assert\s)", re.MULTILINE)


def _canonical_number(text: str) -> str:
    value = Decimal(text.replace(",", ""))
    return "0" if value == 0 else f"{value.normalize():f}"


def extract_final_number(text: str) -> str | None:
    """The final answer, as a canonical decimal string ('1,000.50' → '1000.5')."""
    markers = list(FINAL_ANSWER_MARKER.finditer(text))
    if markers:
        after_marker = NUMBER.search(text, markers[-1].end())
        if after_marker:
            return _canonical_number(after_marker.group())
    numbers = NUMBER.findall(text)
    return _canonical_number(numbers[-1]) if numbers else None


def exact_match_text(prediction: str, reference: str) -> bool:
    """True when the texts are equal up to whitespace (the organism's list tasks)."""
    return " ".join(prediction.split()) == " ".join(reference.split())


def exact_match_number(prediction: str, reference: str | int | float) -> bool:
    """True when the prediction's final number equals the reference's (GSM8K exact match)."""
    reference_number = extract_final_number(str(reference))
    if reference_number is None:
        raise ValueError(f"the reference {reference!r} holds no number")
    predicted = extract_final_number(prediction)
    return predicted is not None and Decimal(predicted) == Decimal(reference_number)


def _brace_group(text: str, start: int) -> tuple[str, int] | None:
    """The content of the balanced {...} opening at `start`, and the index after it."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start + 1 : index], index + 1
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`, `\\boxed 5`) in `text`, or None."""
    matches = list(BOXED.finditer(text))
    if not matches:
        return None
    end = matches[-1].end()
    group = _brace_group(text, end)
    if group is not None:
        return group[0]
    bare = re.match(r"\s+([^\s$]+)", text[end:])
    return bare.group(1) if bare else None


def extract_math_answer(text: str) -> str:
    """The answer part of a MATH response: the last boxed expression, else what follows the last
    'answer is' on its line, else the whole response."""
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed
    stated = list(re.finditer(r"answer\s+is:?", text, re.IGNORECASE))
    if stated:
        return text[stated[-1].end() :].split("\n", 1)[0]
    return text


def _braced_argument(text: str, start: int) -> tuple[str, int] | None:
    """A LaTeX macro argument at `start`: a {group} or a single character (`\\frac12`)."""
    if start < len(text) and text[start] == "{":
        return _brace_group(text, start)
    if start < len(text):
        return text[start], start + 1
    return None


def _slash_operand(text: str) -> str:
    return f"({text})" if OPERATOR.search(text.removeprefix("-")) else text


def _fractions_to_slash(text: str) -> str:
    """`\\frac{a}{b}` → `a/b`, innermost fractions included, operands with operators in ()."""
    start = text.find("\\frac")
    if start < 0:
        return text
    numerator = _braced_argument(text, start + len("\\frac"))
    denominator = numerator and _braced_argument(text, numerator[1])
    if not denominator:
        return text  # malformed: compared as written
    top, bottom = _fractions_to_slash(numerator[0]), _fractions_to_slash(denominator[0])
    rest = _fractions_to_slash(text[denominator[1] :])
    return f"{text[:start]}{_slash_operand(top)}/{_slash_operand(bottom)}{rest}"


def _fix_sqrt(text: str) -> str:
    return re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", text)


def normalize_math_answer(answer: str) -> str:
    """A canonical string for a MATH answer (see the module docstring for the rules)."""
    text = extract_math_answer(answer)
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    for token in ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\$", "$", "\\%", "%"):
        text = text.replace(token, "")
    text = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", text)
    text = re.sub(r"\s+", "", text.replace("\\ ", " "))
    sides = text.split("=")
    if len(sides) == 2 and re.fullmatch(r"[A-Za-z]\w?", sides[0]):
        text = sides[1]  # 'x=5' answers '5'
    text = _fractions_to_slash(_fix_sqrt(text))
    text = text.rstrip(".")
    return re.sub(r"(^|[^\d])\.(\d)", r"\g<1>0.\2", text)  # '.5' → '0.5'


def _as_rational(text: str) -> Fraction | None:
    """The value of a plain number or a ratio of two ('-3', '2.50', '1/2', '(-1)/2'), else None."""
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", text):
        text = text.replace(",", "")
    values = []
    for part in text.split("/"):
        if part.startswith("(") and part.endswith(")"):
            part = part[1:-1]
        if not PLAIN_NUMBER.fullmatch(part):
            return None
        values.append(Fraction(part))
    if len(values) == 1:
        return values[0]
    if len(values) == 2 and values[1] != 0:
        return values[0] / values[1]
    return None


def math_equal(prediction: str, reference: str) -> bool:
    """True when a MATH response's answer equals the reference answer after normalisation."""
    predicted, expected = normalize_math_answer(prediction), normalize_math_answer(reference)
    if not expected:
        raise ValueError(f"the reference {reference!r} is empty after normalisation")
    if predicted == expected:
        return True
    predicted_value, expected_value = _as_rational(predicted), _as_rational(expected)
    return predicted_value is not None and predicted_value == expected_value


def entry_point_of(prompt: str) -> str | None:
    """The function a HumanEval prompt asks for: its last top-level `def`."""
    names = re.findall(r"^def\s+(\w+)\s*\(", prompt, re.MULTILINE)
    return names[-1] if names else None


def _unfenced(completion: str, entry_point: str | None) -> str:
    """The code inside markdown fences: the block defining the entry point, else the first one."""
    blocks = FENCE.findall(completion)
    if not blocks:
        return completion
    if entry_point:
        for block in blocks:
            if re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", block, re.MULTILINE):
                return block
    return blocks[0]


def extract_code(completion: str, prompt: str) -> str:
    """The program a HumanEval completion stands for (without the tests).

    Markdown fences are stripped (keeping the block that defines the prompt's function) and
    top-level example usage after the code (`if __name__ ...`, `print(`, `assert`) is cut.
    A completion that repeats the whole function (`def <entry_point>(` at column 0) runs after
    the prompt: its definition replaces the prompt's stub, while the prompt's imports and
    helper functions (HumanEval/10, /38, ...) stay defined. Any other completion is the
    function's body and is appended to the prompt, as in HumanEval's own format.
    """
    entry_point = entry_point_of(prompt)
    code = _unfenced(completion, entry_point)
    scaffold = TRAILING_SCAFFOLD.search(code)
    if scaffold:
        code = code[: scaffold.start()]
    repeats_function = entry_point is not None and re.search(
        rf"^def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE
    )
    return f"{prompt}\n{code}" if repeats_function else prompt + code
