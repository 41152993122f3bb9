"""Every clause id in reference/SPEC.md is cited by a test, and every id the code cites exists."""
import pathlib
import re

from klconform.reference.spec import VERDICT_CLAUSES, clause_ids, parse_clause_ids

ROOT = pathlib.Path(__file__).resolve().parents[2]
_ID = re.compile(r"KL-[A-Z0-9]+(?:-[A-Z0-9]+)+")


def _texts(folder: str, pattern: str = "*.py") -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / folder).rglob(pattern))


def test_spec_has_clauses_and_no_duplicates():
    ids = clause_ids()
    assert len(ids) >= 50 and len(set(ids)) == len(ids)
    assert parse_clause_ids("**KL-A-1**\ntext\n**KL-B-2** more") == ("KL-A-1", "KL-B-2")


def test_every_clause_is_cited_by_a_test():
    tests = _texts("tests")
    cited = set(_ID.findall(tests))
    uncited = [i for i in clause_ids() if i not in cited]
    assert not uncited, f"SPEC.md clauses no test cites: {uncited}"


def test_ids_cited_in_code_exist_in_spec():
    """Ids in comments of the shared contracts and the reference must be defined."""
    code = _texts("reference") + _texts("klconform")
    unknown = sorted(set(_ID.findall(code)) - set(clause_ids()))
    assert not unknown, f"code cites ids SPEC.md does not define: {unknown}"


def test_verdict_classes_each_have_a_clause():
    """KL-VERDICT-MATCH and siblings: one clause per klconform.results verdict class."""
    from klconform.results import VERDICT_CLASSES
    assert set(VERDICT_CLAUSES) == set(VERDICT_CLASSES)
    assert set(VERDICT_CLAUSES.values()) <= set(clause_ids())
    assert {i for i in clause_ids() if i.startswith("KL-VERDICT-")} == set(VERDICT_CLAUSES.values())
