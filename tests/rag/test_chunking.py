import pytest

from shoal import InvalidArgumentError
from shoal.rag import chunk_text, scrub_pii, split_sentences


def _text(n_sentences: int, words: int = 10) -> str:
    return " ".join(" ".join(f"s{i}w{j}" for j in range(words)) + "." for i in range(n_sentences))


def test_sentences_respect_abbreviations_headings_and_lists():
    t = "Hello world. This is Dr. Smith speaking! Is it e.g. fine? Yes.\n\n# Heading\nA para here\n- item one\n- item two"
    assert split_sentences(t) == ["Hello world.", "This is Dr. Smith speaking!", "Is it e.g. fine?", "Yes.",
                                  "# Heading", "A para here", "- item one", "- item two"]


def test_chunks_cover_text_within_size_and_overlap():
    text = _text(40)  # 40 sentences of 10 words
    chunks = chunk_text(text, chunk_words=50, overlap_words=20)
    words = text.split()
    assert chunks[0].start_word == 0 and chunks[-1].end_word == len(words)
    for a, b in zip(chunks, chunks[1:]):
        assert b.start_word < a.end_word  # overlap
        assert a.end_word - b.start_word == 20  # two whole sentences of 10 words
        assert b.end_word > a.end_word  # progress
    for c in chunks:
        assert c.n_words <= 50
        assert c.text.split() == words[c.start_word:c.end_word]
        assert c.text.startswith("s") and c.text.endswith(".")  # sentence-aligned
        assert c.text.split()[0].endswith("w0")  # starts at a sentence start


def test_long_sentence_split_into_windows_and_no_overlap():
    text = " ".join(f"w{i}" for i in range(250))
    chunks = chunk_text(text, chunk_words=100, overlap_words=0)
    assert [c.n_words for c in chunks] == [100, 100, 50]
    assert " ".join(c.text for c in chunks) == text


def test_small_text_one_chunk_and_empty_text_none():
    assert [c.text for c in chunk_text("One. Two.", 100, 20)] == ["One. Two."]
    assert chunk_text("   \n ", 100, 20) == []


@pytest.mark.parametrize("size,overlap", [(0, 0), (10, 10), (10, -1)])
def test_bad_sizes_rejected(size, overlap):
    with pytest.raises(InvalidArgumentError):
        chunk_text("text", size, overlap)


def test_pii_scrubbing():
    r = scrub_pii("Mail jane.doe+x@example.co.uk or call +1 (555) 123-4567, or 030 12345678 now.")
    assert r.text == "Mail [EMAIL] or call [PHONE], or [PHONE] now."
    assert (r.emails, r.phones) == (1, 2)
    keep = "Python 3.11.2 was released 2024-01-15; host 192.168.1.1; order 12345 costs 1,000; page 42."
    assert scrub_pii(keep).text == keep
