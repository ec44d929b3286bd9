"""Pagers: every list that can grow is shown `data.PAGE_SIZE` rows at a time."""

from collections.abc import Callable, Sequence

import pandas as pd
import streamlit as st

from dashboard import data

# The buttons: for lists newest first, and for lists in their own order.
NEWEST_FIRST = ("◀ newer", "older ▶")
IN_ORDER = ("◀ previous", "next ▶")


def pager(
    key: str,
    page: int,
    shown: int,
    noun: str,
    *,
    total: int | None = None,
    labels: tuple[str, str] = NEWEST_FIRST,
    size: int | None = None,
) -> None:
    """Buttons to the page before and after, for a list shown `size` rows at a time.

    `size` is `data.PAGE_SIZE` unless given.

    `total`, when the whole list is at hand, numbers the pages; otherwise a short page is
    the last one.
    """
    previous, label, following = st.columns([1, 2, 1])
    if previous.button(labels[0], disabled=page == 0, key=f"{key}-previous"):
        _turn_to(key, page - 1)
    if total is None:
        label.caption(f"page {page + 1} · {shown} {noun}")
        last = shown < (size or data.PAGE_SIZE)
    else:
        pages = _pages(total)
        label.caption(f"page {page + 1} of {pages} · {total} {noun}")
        last = page + 1 >= pages
    if following.button(labels[1], disabled=last, key=f"{key}-next"):
        _turn_to(key, page + 1)


def _turn_to(key: str, page: int) -> None:
    st.session_state[key] = page
    st.rerun()


def _pages(total: int) -> int:
    return max(1, -(-total // data.PAGE_SIZE))


def in_pages[T](
    items: Sequence[T], key: str, noun: str, draw: Callable[[Sequence[T]], None]
) -> None:
    """Draw a list already in memory a page at a time; a pager under it when it has more."""
    page = _page_of(key, len(items))
    draw(items[page * data.PAGE_SIZE : (page + 1) * data.PAGE_SIZE])
    _pager_if_more(key, page, len(items), noun)


def table_in_pages(frame: pd.DataFrame, key: str, noun: str) -> None:
    """A table already in memory, a page at a time."""
    page = _page_of(key, len(frame))
    rows = frame.iloc[page * data.PAGE_SIZE : (page + 1) * data.PAGE_SIZE]
    st.dataframe(rows, hide_index=True, width="stretch")
    _pager_if_more(key, page, len(frame), noun)


def _page_of(key: str, total: int) -> int:
    # The list may have shrunk since the page was chosen: stay within it.
    return min(int(st.session_state.get(key, 0)), _pages(total) - 1)


def _pager_if_more(key: str, page: int, total: int, noun: str) -> None:
    if total > data.PAGE_SIZE:
        pager(key, page, data.PAGE_SIZE, noun, total=total, labels=IN_ORDER)
