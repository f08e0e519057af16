"""A small HCL (v1 syntax, also the block subset of HCL2 used in job files) parser.

parse(text) -> dict.  Blocks and object attributes become dicts; labels nest
(``job "web" { ... }`` -> {"job": {"web": {...}}}).  A key that appears more than
once at the same level becomes a list of its values (in order), which is what
HashiCorp's HCL1 decoder sees as repeated blocks; config.py merges them.
"""

from __future__ import annotations

import json
import re


class HCLError(ValueError):
    def __init__(self, msg: str, line: int = 0, col: int = 0):
        super().__init__(f"At {line}:{col}: {msg}" if line else msg)
        self.line = line
        self.col = col


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-.]*")
_NUMBER = re.compile(r"-?(0x[0-9a-fA-F]+|\d+(\.\d+)?([eE][+-]?\d+)?)")


class _Tok:
    __slots__ = ("kind", "value", "line", "col")

    def __init__(self, kind, value, line, col):
        self.kind, self.value, self.line, self.col = kind, value, line, col

    def __repr__(self):
        return f"Tok({self.kind},{self.value!r},{self.line}:{self.col})"


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n, line, lstart = 0, len(text), 1, 0
    while i < n:
        c = text[i]
        col = i - lstart + 1
        if c == "\n":
            toks.append(_Tok("nl", None, line, col))
            line += 1
            lstart = i + 1
            i += 1
            continue
        if c in " \t\r\ufeff":
            i += 1
            continue
        if c == "#" or text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise HCLError("unterminated comment", line, col)
            line += text.count("\n", i, end)
            if "\n" in text[i:end]:
                lstart = text.rfind("\n", i, end) + 1
            i = end + 2
            continue
        if c in "{}[]=,:":
            toks.append(_Tok(c, c, line, col))
            i += 1
            continue
        if c == '"':
            s, i2 = _read_string(text, i, line, col)
            toks.append(_Tok("str", s, line, col))
            i = i2
            continue
        if text.startswith("<<", i):
            m = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_]*)[ \t]*\n").match(text, i)
            if not m:
                raise HCLError("invalid heredoc", line, col)
            indent, marker = m.group(1) == "-", m.group(2)
            j = m.end()
            body_lines = []
            while True:
                if j >= n:
                    raise HCLError(f"heredoc {marker} not terminated", line, col)
                e = text.find("\n", j)
                ln = text[j:] if e < 0 else text[j:e]
                line += 1
                if ln.strip() == marker:
                    j = n if e < 0 else e
                    break
                body_lines.append(ln)
                j = n if e < 0 else e + 1
            if indent:
                ws = [len(x) - len(x.lstrip()) for x in body_lines if x.strip()]
                cut = min(ws) if ws else 0
                body_lines = [x[cut:] for x in body_lines]
            toks.append(_Tok("str", "\n".join(body_lines) + ("\n" if body_lines else ""), line, col))
            lstart = j
            i = j
            continue
        m = _NUMBER.match(text, i)
        if m and (c.isdigit() or (c == "-" and i + 1 < n and text[i + 1].isdigit())):
            s = m.group(0)
            if s.lower().startswith(("0x", "-0x")):
                v = int(s, 16)
            elif any(ch in s for ch in ".eE"):
                v = float(s)
            else:
                v = int(s)
            toks.append(_Tok("num", v, line, col))
            i = m.end()
            continue
        m = _IDENT.match(text, i)
        if m:
            word = m.group(0)
            if word in ("true", "false"):
                toks.append(_Tok("bool", word == "true", line, col))
            elif word == "null":
                toks.append(_Tok("null", None, line, col))
            else:
                toks.append(_Tok("ident", word, line, col))
            i = m.end()
            continue
        raise HCLError(f"illegal char {c!r}", line, col)
    toks.append(_Tok("eof", None, line, i - lstart + 1))
    return toks


_ESC = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _read_string(text: str, i: int, line: int, col: int) -> tuple[str, int]:
    out = []
    j = i + 1
    n = len(text)
    depth = 0  # inside ${ } interpolation braces (kept verbatim)
    while j < n:
        c = text[j]
        if c == "\n" and depth == 0:
            raise HCLError("literal not terminated (newline in string)", line, col)
        if c == "\\":
            if j + 1 >= n:
                break
            e = text[j + 1]
            if e in _ESC:
                out.append(_ESC[e])
                j += 2
                continue
            if e == "u" and j + 5 < n + 1:
                out.append(chr(int(text[j + 2:j + 6], 16)))
                j += 6
                continue
            if e == "U":
                out.append(chr(int(text[j + 2:j + 10], 16)))
                j += 10
                continue
            raise HCLError(f"unknown escape sequence \\{e}", line, col)
        if text.startswith("${", j):
            depth += 1
            out.append("${")
            j += 2
            continue
        if c == "}" and depth:
            depth -= 1
        if c == '"' and depth == 0:
            return "".join(out), j + 1
        out.append(c)
        j += 1
    raise HCLError("literal not terminated", line, col)


class _Parser:
    def __init__(self, toks):
        self.toks = toks
        self.i = 0

    def peek(self, skip_nl=True):
        j = self.i
        while skip_nl and self.toks[j].kind == "nl":
            j += 1
        return self.toks[j]

    def next(self, skip_nl=True):
        while skip_nl and self.toks[self.i].kind == "nl":
            self.i += 1
        t = self.toks[self.i]
        self.i += 1
        return t

    def expect(self, kind):
        t = self.next()
        if t.kind != kind:
            raise HCLError(f"expected {kind!r}, got {t.value if t.value is not None else t.kind!r}", t.line, t.col)
        return t

    def body(self, end: str) -> dict:
        out: dict = {}
        while True:
            t = self.peek()
            if t.kind == end:
                self.next()
                return out
            if t.kind == ",":
                self.next()
                continue
            if t.kind not in ("ident", "str"):
                raise HCLError(f"expected key, got {t.value if t.value is not None else t.kind!r}", t.line, t.col)
            self.next()
            key = t.value
            labels = []
            while True:
                nt = self.peek()
                if nt.kind in ("str", "ident") and nt.line == t.line:
                    self.next()
                    labels.append(nt.value)
                    continue
                break
            nt = self.next()
            if nt.kind in ("=", ":"):
                if labels:
                    raise HCLError(f"unexpected labels before '=' for {key!r}", nt.line, nt.col)
                val = self.value()
            elif nt.kind == "{":
                val = self.body("}")
                for lab in reversed(labels):
                    val = _Labels({lab: val})
            else:
                raise HCLError(f"key {key!r} expected start of object ('{{') or assignment ('=')", nt.line, nt.col)
            _put(out, key, val, is_block=nt.kind == "{")

    def value(self):
        t = self.next()
        if t.kind in ("str", "num", "bool", "null"):
            return t.value
        if t.kind == "[":
            items = []
            while True:
                p = self.peek()
                if p.kind == "]":
                    self.next()
                    return items
                items.append(self.value())
                p = self.peek()
                if p.kind == ",":
                    self.next()
                elif p.kind != "]":
                    raise HCLError(f"expected ',' or ']' in list, got {p.value!r}", p.line, p.col)
        if t.kind == "{":
            return self.body("}")
        if t.kind == "ident":
            # bare expression (HCL2 references like attr.kernel.name); keep as text
            return "${" + t.value + "}"
        raise HCLError(f"unexpected token {t.value if t.value is not None else t.kind!r}", t.line, t.col)


class Repeated(list):
    """Marker: several blocks/assignments with the same key."""


_Repeated = Repeated


def _put(out: dict, key: str, val, is_block: bool):
    if key in out:
        cur = out[key]
        if isinstance(cur, _Labels) and isinstance(val, _Labels):
            # job "x" { group "a" {} group "b" {} } -> merge label maps
            for k, v in val.items():
                if k in cur:
                    _put(cur, k, v, True)
                else:
                    cur[k] = v
            return
        if isinstance(cur, _Repeated):
            cur.append(val)
        else:
            out[key] = _Repeated([cur, val])
    else:
        out[key] = val


class _Labels(dict):
    """Marker: the label level of a labelled block."""


def parse(text: str) -> dict:
    toks = _tokenize(text)
    p = _Parser(toks)
    result = p.body("eof")
    return _plain(result)


def _plain(v):
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, _Repeated):
        return Repeated(_plain(x) for x in v)
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def loads(text: str, fmt: str) -> dict:
    """Parse a config document; fmt is 'hcl' or 'json'."""
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise HCLError(f"invalid JSON: {e}") from e
        if not isinstance(data, dict):
            raise HCLError("top-level JSON value must be an object")
        return data
    return parse(text)
