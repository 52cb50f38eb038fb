"""Column conversion between code points and client units (utf-8/16/32) on emoji and CJK lines."""

from lsprotocol import types

from lsp import convert

LINE = 'a = "😀你"; b'  # 😀 is 1 code point, 2 utf-16 units, 4 utf-8 bytes; 你 is 1, 1, 3


def test_to_client_column_in_every_encoding():
    b = LINE.index("b")  # 10 code points in
    assert convert.to_client_column(LINE, b, "utf-32") == 10
    assert convert.to_client_column(LINE, b, "utf-16") == 11
    assert convert.to_client_column(LINE, b, "utf-8") == 15
    assert convert.to_client_column(LINE, 999, "utf-16") == convert.text_units(LINE, "utf-16") == 12


def test_to_server_column_round_trips_and_clamps():
    for encoding in ("utf-8", "utf-16", "utf-32"):
        for column in range(len(LINE) + 1):
            units = convert.to_client_column(LINE, column, encoding)
            assert convert.to_server_column(LINE, units, encoding) == column, (encoding, column)
        assert convert.to_server_column(LINE, 10_000, encoding) == len(LINE)
        assert convert.to_server_column(LINE, -3, encoding) == 0
    emoji = LINE.index("😀")
    assert convert.to_server_column(LINE, emoji + 1, "utf-16") == emoji  # inside the surrogate pair
    assert convert.to_server_column(LINE, emoji + 3, "utf-8") == emoji  # inside the 4-byte sequence


def test_positions_past_the_end_clamp_to_the_text():
    lines = ["first", LINE]
    far = convert.to_server_position(lines, types.Position(line=50, character=2), "utf-16")
    assert far == (1, len(LINE))
    assert convert.to_client_position(lines, 7, 0, "utf-8") == types.Position(line=1, character=16)
    assert convert.to_server_position([], types.Position(line=3, character=3), "utf-8") == (0, 0)


def test_incremental_change_in_client_units():
    text = f"x = 1\n{LINE}\n"
    lines = convert.split_lines(text)
    b = convert.to_client_column(LINE, LINE.index("b"), "utf-16")
    change = types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(line=1, character=b), end=types.Position(line=1, character=b + 1)),
        text="total")
    assert convert.apply_change(text, lines, change, "utf-16") == f"x = 1\n{LINE[:-1]}total\n"
    crlf = "one\r\ntwo\r\n"
    change = types.TextDocumentContentChangePartial(
        range=types.Range(start=types.Position(line=1, character=0), end=types.Position(line=1, character=3)), text="2")
    assert convert.apply_change(crlf, convert.split_lines(crlf), change, "utf-8") == "one\r\n2\r\n"
