"""The search_knowledge tool, the [knowledge] config block, files and chunking."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tests.knowledge.conftest import tenant
from w3sipagent.agent.tools import ToolRegistry
from w3sipagent.config import ConfigProblems, load_settings
from w3sipagent.knowledge import (
    KnowledgeBases,
    KnowledgeError,
    Passage,
    chunk_text,
    extract_text,
    find_files,
)
from w3sipagent.tenants.models import TenantConfig


class _Ctx:
    async def transfer_to(self, destination: str, uri: str, reason: str):  # pragma: no cover
        raise AssertionError

    async def end_call(self, reason: str) -> None:  # pragma: no cover
        raise AssertionError

    async def send_dtmf(self, digits: str) -> None:  # pragma: no cover
        raise AssertionError


async def test_search_knowledge_tool_returns_passages_with_sources(
    bases: KnowledgeBases, tenants: dict[str, TenantConfig]
) -> None:
    acme = tenants["acme"]
    kb = bases.for_tenant(acme)
    assert kb is not None
    await kb.sync()
    reg = ToolRegistry.for_tenant(acme, acme.default.tools, knowledge=kb)
    assert "search_knowledge" in reg
    spec = next(s for s in reg.specs() if s.name == "search_knowledge")
    assert spec.parameters["required"] == ["query"]
    result = await reg.run(_Ctx(), "search_knowledge", json.dumps({"query": "where to park"}))
    assert result.error is None
    out = json.loads(result.to_json())
    first = out["passages"][0]
    assert first["source"] == "menu/parking.md" and first["chunk"] == 0
    assert "Parking for Acme guests" in first["text"] and 0 < first["score"] <= 1
    # at most top_k (4), and only passages with something in common (score > 0)
    assert 1 <= len(out["passages"]) <= 3
    assert all(p["score"] > 0 for p in out["passages"])
    bad = await reg.run(_Ctx(), "search_knowledge", json.dumps({"query": " "}))
    assert bad.error == "query must be a non-empty string"


async def test_tool_bound_to_its_tenant_never_sees_the_other(
    bases: KnowledgeBases, tenants: dict[str, TenantConfig]
) -> None:
    for t in tenants.values():
        kb = bases.for_tenant(t)
        assert kb is not None
        await kb.sync()
    globex = tenants["globex"]
    reg = ToolRegistry.for_tenant(globex, (), knowledge=bases.for_tenant(globex))
    result = await reg.run(_Ctx(), "search_knowledge", '{"query": "Acme pepperoni parking"}')
    texts = [p["text"] for p in json.loads(result.to_json())["passages"]]
    assert texts and all("Acme" not in t for t in texts)


async def test_tool_failure_is_a_tool_error() -> None:
    class Down:
        async def search(self, query: str, top_k: int | None = None) -> list[Passage]:
            raise KnowledgeError("embeddings: HTTP 503")

    t = TenantConfig.model_validate({"id": "x", "agents": {"a": {}}})
    reg = ToolRegistry.for_tenant(t, (), knowledge=Down())
    result = await reg.run(_Ctx(), "search_knowledge", '{"query": "hours"}')
    assert result.error == "the knowledge base is unavailable right now"
    assert "search_knowledge" not in ToolRegistry.for_tenant(t, ())


def _write(tmp_path: Path, body: str) -> Path:
    p = tmp_path / "w3sipagent.toml"
    p.write_text(body, encoding="utf-8")
    return p


def test_config_block_relative_paths_and_defaults(tmp_path: Path) -> None:
    cfg = _write(
        tmp_path,
        """
[tenants.acme]
hosts = ["acme.example"]
api_key = { env = "ACME_KEY" }
knowledge = { paths = ["kb", "/srv/faq.md"], top_k = 3 }
[tenants.acme.agents.front]
knowledge = true
""",
    )
    s = load_settings(cfg, environ={})
    kb = s.tenants["acme"].knowledge
    assert kb is not None
    assert kb.paths == [tmp_path / "kb", Path("/srv/faq.md")]
    assert kb.embedding_model == "text-embedding-3-small" and kb.top_k == 3
    assert kb.base_url == "https://api.openai.com/v1" and kb.api_key is None
    assert s.tenants["acme"].agents["front"].knowledge is True


@pytest.mark.parametrize(
    ("block", "agent", "expect"),
    [
        ("knowledge = { paths = [] }", "", "knowledge.paths"),
        (
            'knowledge = { paths = ["kb"], chunk_size = 200, chunk_overlap = 150 }',
            "",
            "chunk_overlap",
        ),
        ('knowledge = { paths = ["kb"], api_key = "sk-inline" }', "", "knowledge.api_key"),
        ('knowledge = { paths = ["kb"], base_url = "ftp://x" }', "", "knowledge.base_url"),
        ('knowledge = { paths = ["kb"], extensions = [".docx"] }', "", "knowledge.extensions"),
        ('knowledge = { paths = ["kb"], top_kk = 3 }', "", "knowledge.top_kk"),
        ("", "knowledge = true", "agents.front.knowledge: the tenant has no [knowledge] table"),
    ],
)
def test_config_errors_name_file_tenant_and_key(
    tmp_path: Path, block: str, agent: str, expect: str
) -> None:
    cfg = _write(
        tmp_path,
        f"""
[tenants.acme]
hosts = ["acme.example"]
{block}
[tenants.acme.agents.front]
{agent}
""",
    )
    with pytest.raises(ConfigProblems) as info:
        load_settings(cfg, environ={})
    text = str(info.value)
    assert str(cfg) in text and "acme" in text and expect in text, text


def test_search_knowledge_is_a_reserved_tool_name() -> None:
    with pytest.raises(ValueError, match="reserved"):
        TenantConfig.model_validate(
            {
                "id": "x",
                "agents": {
                    "a": {"tools": [{"name": "search_knowledge", "url": "http://h.example/"}]}
                },
            }
        )


def test_find_files_recurses_filters_and_names(tmp_path: Path) -> None:
    (tmp_path / "kb" / "sub").mkdir(parents=True)
    for name in ["a.md", "sub/b.txt", "sub/c.docx", ".hidden.md", "sub/d.PDF"]:
        (tmp_path / "kb" / name).write_bytes(b"x")
    (tmp_path / "single.txt").write_text("y")
    files, problems = find_files(
        [tmp_path / "kb", tmp_path / "single.txt", tmp_path / "kb" / "a.md", tmp_path / "nope"],
        [".md", ".txt", ".pdf"],
    )
    assert sorted(f.name for f in files) == ["a.md", "single.txt", "sub/b.txt", "sub/d.PDF"]
    assert problems == [f"{tmp_path / 'nope'}: no such file or folder"]


def test_chunking_respects_size_paragraphs_and_overlap() -> None:
    paras = [f"Paragraph {i} " + " ".join(f"word{i}_{j}" for j in range(12)) for i in range(8)]
    chunks = chunk_text("\n\n".join(paras), 300, 40)
    assert all(len(c) <= 300 for c in chunks) and len(chunks) >= 3
    # each passage starts with the last words of the one before
    for a, b in itertools.pairwise(chunks):
        assert b.split()[0] in a.split()[-8:]
    long_para = " ".join(f"w{i}" for i in range(400))
    pieces = chunk_text(long_para, 200, 30)
    assert all(len(p) <= 200 for p in pieces)
    joined = " ".join(pieces).split()
    assert set(joined) == {f"w{i}" for i in range(400)}  # nothing lost
    assert chunk_text("  \n\n  ", 200, 20) == []


def _pdf(text: str) -> bytes:
    """A minimal one-page PDF showing ``text`` in Helvetica."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def test_pdf_text_through_pypdf() -> None:
    pytest.importorskip("pypdf")
    assert "Free parking behind the bistro" in extract_text(
        "faq.pdf", _pdf("Free parking behind the bistro")
    )
    with pytest.raises(KnowledgeError, match=r"^broken\.pdf: unreadable PDF"):
        extract_text("broken.pdf", b"%PDF-1.4 garbage")


def test_tenant_helper_builds_a_valid_tenant(tmp_path: Path) -> None:
    t = tenant("acme", tmp_path, "http://127.0.0.1:9/v1")
    assert t.knowledge is not None and t.knowledge.base_url == "http://127.0.0.1:9/v1"
