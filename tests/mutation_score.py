"""The mutation score of `make mutants`: mutmut's verdicts on the mutants in scope, less the ones
docs/mutants.md lists as equivalent (a backticked mutant name opening a table row; survivors
that are not equivalent open a list item).

    python tests/mutation_score.py docs/mutants.md PATTERN...   (PATTERN: fnmatch on names)
"""

import fnmatch
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

DETECTED = {"killed", "timeout", "segfault", "caught by type check"}


def verdicts(patterns: list[str]) -> dict[str, str]:
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = dict(line.strip().rsplit(": ", 1) for line in listing.splitlines() if ": " in line)
    return {
        name: status
        for name, status in found.items()
        if any(fnmatch.fnmatch(name, pattern) for pattern in patterns)
    }


def listed(doc: Path, start: str) -> set[str]:
    """Mutant names opening a line with `start` (a table row "| " or a list item "- ")."""
    return set(
        re.findall(rf"^{re.escape(start)}`([\w.ǁ]+__mutmut_\d+)`", doc.read_text(), re.MULTILINE)
    )


def main(doc: str, *patterns: str) -> None:
    results = verdicts(list(patterns))
    equivalent, explained = listed(Path(doc), "| "), listed(Path(doc), "- ")
    counts = Counter(results.values())
    undetected = sorted(name for name, status in results.items() if status not in DETECTED)
    unexplained = [name for name in undetected if name not in equivalent | explained]
    killed = sum(counts[status] for status in DETECTED)
    judged = len(results) - len(equivalent & set(results))
    print(f"mutants in scope: {len(results)} ({dict(counts)})")
    print(f"listed as equivalent in {doc}: {len(equivalent & set(results))}")
    print(
        f"mutation score: {killed}/{judged} = {100 * killed / max(judged, 1):.1f}% of "
        f"non-equivalent mutants killed"
    )
    print(
        f"surviving, not equivalent: {len(undetected) - len(equivalent & set(undetected))} "
        f"(listed with why: {len(explained & set(undetected))})"
    )
    if unexplained:
        print(f"{len(unexplained)} surviving mutant(s) not listed in {doc} (`mutmut show NAME`):")
        print("\n".join(f"  {name} ({results[name]})" for name in unexplained))
    if counts["not checked"]:
        sys.exit("some mutants were not checked: run `make mutants` to the end")


if __name__ == "__main__":
    main(*sys.argv[1:])
