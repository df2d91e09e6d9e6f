"""The walk over the list endpoint's pages as a table: the pages asked for and the stops, given the answers (no server).

Each row feeds ``PageWalk.next`` one answer at a time and compares, for each, what it asked for next
(a page number or a ``Stop``) and the ids it handed over to be written (None: nothing to write).
"""

from __future__ import annotations

from typing import Any

import pytest

from batcher.core.paging import PageAnswer, PageRequest, PageWalk, Stop

PER_PAGE = 2
COMPLETE = Stop()


def page(ids: list[Any], total: int | None = None, start: int | None = None) -> PageAnswer:
    """A 2xx page listing ``ids``, with ``total_count`` and ``start_offset`` (1-based) when given."""
    paging = {"total_count": total} if total is not None else {}
    if start is not None:
        paging["start_offset"] = start
    return PageAnswer(200, True, {"success": True, "data": [{"id": i} for i in ids], "paging": paging})


def failed(status: int | None, message: str = "bad page") -> PageAnswer:
    """A failure, after the client's retries."""
    return PageAnswer(status, False, None, message)


def early(why: str) -> Stop:
    return Stop(f"{why}; stopped listing there (the list may be incomplete)")


def walk(answers: list[PageAnswer]) -> list[tuple[int | Stop, list[Any] | None]]:
    """For each answer: the page asked for next (or the stop), and the ids handed over."""
    pages = PageWalk(PER_PAGE)
    assert pages.first() == PageRequest(1, PER_PAGE), "page 1 first"
    steps = []
    for answer in answers:
        step = pages.next(answer)
        new = [item.get("id") if isinstance(item, dict) else item for item in pages.new_items or []]
        steps.append(
            (step.page_no if isinstance(step, PageRequest) else step, None if pages.new_items is None else new)
        )
        if isinstance(step, Stop):
            break
        assert step.per_page == PER_PAGE
    assert len(steps) == len(answers), "the walk stopped before the last answer"
    return steps


ROWS = [
    (
        "a server counting from 1 is listed from page 1 until total_count",
        [page(["a", "b"], 3, start=1), page(["c"], 3, start=3)],
        [(2, ["a", "b"]), (COMPLETE, ["c"])],
    ),
    (
        "a page 1 starting past the first meeting comes from a server counting from 0: page 0, then page 2",
        [page(["c", "d"], 5, start=3), page(["a", "b"], 5, start=1), page(["e"], 5, start=5)],
        [(0, ["c", "d"]), (2, ["a", "b"]), (COMPLETE, ["e"])],
    ),
    (
        "an empty page 1 from a server claiming meetings means it counts from 0",
        [page([], 2), page(["a", "b"], 2)],
        [(0, []), (COMPLETE, ["a", "b"])],
    ),
    ("an empty page 1 with nothing claimed is an empty list", [page([], 0)], [(COMPLETE, None)]),
    (
        "an empty page 1 with no total_count or offsets asks for page 0 once: a server counting from 0, under a page",
        [page([]), page(["a"])],
        [(0, None), (COMPLETE, ["a"])],
    ),
    (
        "an empty page 1 with no total_count, whose page 0 is refused, is an empty list",
        [page([]), failed(400)],
        [(0, None), (COMPLETE, None)],
    ),
    (
        "offsets counted from 0: a page 1 at offset 0 is the first page",
        [page(["a", "b"], 3, start=0), page(["c"], 3, start=2)],
        [(2, ["a", "b"]), (COMPLETE, ["c"])],
    ),
    (
        "one meeting at offset 1 proves no base: page 0 is asked for once the walk ends short",
        [page(["b"], 2, start=1), page([], 2), page(["a"], 2)],
        [(2, ["b"]), (0, None), (COMPLETE, ["a"])],
    ),
    (
        "without offsets, a list that ends short of total_count asks for page 0 once",
        [page(["c", "d"], 4), page([], 4), page(["a", "b"], 4)],
        [(2, ["c", "d"]), (0, None), (COMPLETE, ["a", "b"])],
    ),
    (
        "without offsets, a refused page 0 means the server counts from 1 after all",
        [page(["a", "b"], 4), page([], 4), failed(400)],
        [(2, ["a", "b"]), (0, None), (COMPLETE, None)],
    ),
    (
        "with offsets, a list that ends short of total_count never asks for page 0",
        [page(["a", "b"], 4, start=1), page([], 4, start=0)],
        [(2, ["a", "b"]), (COMPLETE, None)],
    ),
    (
        "a refused page 1 stops the walk with its message: a 4xx is no paging hint",
        [failed(400)],
        [(Stop("listing stopped at page_no=1: bad page"), None)],
    ),
    (
        "any repeat is a loop and stops the walk",
        [page(["a", "b"]), page(["c", "d"]), page(["c", "d"])],
        [(2, ["a", "b"]), (3, ["c", "d"]), (early("page_no=3 repeated the page before it"), None)],
    ),
    (
        "a page with no meeting not seen before stops the walk",
        [page(["a", "b"]), page(["b", "a"])],
        [(2, ["a", "b"]), (early("page_no=2 listed no meeting not seen before"), None)],
    ),
    (
        "a page listing some meetings again hands over only the new ones",
        [page(["a", "b"], 3), page(["b", "c"], 3)],
        [(2, ["a", "b"]), (COMPLETE, ["c"])],
    ),
    (
        "pages that never reach total_count stop at the cap it allows, the last one written first",
        [page([x, y], 10) for x, y in zip("abcdefg", "bcdefgh", strict=True)],  # each page: one new, one seen
        [
            (2, ["a", "b"]),
            (3, ["c"]),
            (4, ["d"]),
            (5, ["e"]),
            (6, ["f"]),
            (7, ["g"]),
            (early("7 pages is the most total_count allows"), ["h"]),  # ceil(10 / 2) + 2
        ],
    ),
    (
        "a page that fails after its retries stops the walk with its message",
        [page(["a", "b"]), failed(500, "HTTP 500: boom")],
        [(2, ["a", "b"]), (Stop("listing stopped at page_no=2: HTTP 500: boom"), None)],
    ),
    (
        "a failed page 1 stops the walk",
        [failed(None, "no answer within 5 s")],
        [(Stop("listing stopped at page_no=1: no answer within 5 s"), None)],
    ),
    (
        "a 2xx without a data list stops the walk",
        [PageAnswer(200, True, {"success": True, "result": {}})],
        [(Stop("listing stopped at page_no=1: the answer has no data list"), None)],
    ),
    (
        "items that are not meetings are handed over for the writer to report",
        [PageAnswer(200, True, {"data": ["junk", {"id": "a"}], "paging": {"total_count": 2}})],
        [(COMPLETE, ["junk", "a"])],
    ),
]


@pytest.mark.parametrize(("answers", "expected"), [row[1:] for row in ROWS], ids=[row[0] for row in ROWS])
def test_the_page_walk_asks_for_the_right_page_and_stops_for_the_right_reason(answers, expected):
    assert walk(answers) == expected


def test_the_walk_counts_pages_listed_meetings_and_the_latest_total_count():
    pages = PageWalk(PER_PAGE)
    pages.next(page(["a", "b"], 5))
    pages.next(page(["c", "b"], 4))
    assert (pages.pages, pages.listed, pages.total_count) == (2, 3, 4)
