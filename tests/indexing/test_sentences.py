"""The units a chunk is read in: sentences, list items, table rows told in words."""
from __future__ import annotations

from assistant.core.records import Chunk
from indexing.sentences import unit_texts


def chunk(text: str) -> Chunk:
    return Chunk("c1", "accounts.md", text, "Chart of Accounts", "Chart of Accounts > Account list", "accounts.md")


def test_a_table_row_is_told_with_its_column_names():
    units = unit_texts(chunk("| Account | Name |\n|---|---|\n| 1570 | Furniture and Fixtures |\n| 1590 | Land |"))
    assert units == ["Chart of Accounts, account list: for 1570, the name is Furniture and Fixtures.",
                     "Chart of Accounts, account list: for 1590, the name is Land."]


def test_a_chunk_that_starts_below_the_header_does_not_take_a_row_for_names():
    # Chunking splits long tables: the second chunk's first row is data, not a header.
    units = unit_texts(chunk("| 2235 | Manitoba RST Payable |\n| 2290 | Intercompany Payable |"))
    assert units == ["Chart of Accounts, account list: for 2235, Manitoba RST Payable.",
                     "Chart of Accounts, account list: for 2290, Intercompany Payable."]
    assert not any("is Intercompany" in u or "the manitoba" in u.lower() for u in units)


def test_short_units_and_list_intros_are_left_out():
    units = unit_texts(chunk("When you host customers for a meal:\n\n- Keep the receipt for every meal you pay.\n- Tips."))
    assert units == ["Keep the receipt for every meal you pay."]   # "Account list: Tips." is three words
