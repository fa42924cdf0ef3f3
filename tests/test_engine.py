"""The streaming engine: stepwise == parallel, chunked == one pass, carried state, sliding
window, guidance, batching, sampling reproducibility."""

from __future__ import annotations

import gc
import resource

import pytest
import torch

from narrate.engine.attention import TextCrossAttention, band_index, gather_band
from narrate.engine.config import ModelConfig
from narrate.engine.generate import DRAW_AHEAD, DecodeSettings, Engine
from narrate.engine.guidance import GuidanceSettings, allowed_moves, guide
from narrate.engine.mamba import Mamba
from narrate.engine.model import NarrateModel
from narrate import kernels
from narrate.engine.packed import PackedLinear, SteppingMamba, for_decoding, torch_int8_supported
from narrate.engine.sampling import SamplingSettings, draws, filter_logits, reference_sample, sample
from narrate.train.losses import adaptive_codebook_weights, reference_adaptive_weights


def small_model(seed=0, **kw) -> NarrateModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=32, n_layers=4, n_heads=2, enc_convs=1, enc_layers=1, n_codebooks=4, codebook_size=16,
                      codebook_groups=[1, 3], speaker_tokens=2, prenet_dropout=0.0, **kw)
    m = NarrateModel(cfg).eval()
    with torch.no_grad():  # advance about one token per step, stop at the end (like the tiny model)
        m.semantic_head.weight.mul_(0.01)
        m.semantic_head.bias.copy_(torch.tensor([0.0, 6.0, 0.0, -4.0, 8.0]))
    return m


def inputs(B=2, N=30, S=14, seed=1):
    g = torch.Generator().manual_seed(seed)
    memory = torch.randn(B, N, 32, generator=g)
    mem_len = torch.tensor([N, N - 6])[:B]
    pos = torch.cumsum(torch.randint(0, 2, (B, S), generator=g), 1).clamp(max=N - 7)
    prev = torch.randn(B, S, 3 * 80, generator=g)
    return memory, mem_len, pos, prev, torch.randn(B, 256, generator=g), torch.zeros(B)


def test_mamba_chunk_and_step_match_reference():
    torch.manual_seed(0)
    m = Mamba(16)
    x = torch.randn(2, 11, 16)
    ref = m.reference_forward(x)
    y, _ = m(x)
    assert torch.allclose(y, ref, atol=1e-5)
    # chunked prefill from a carried state == one pass
    y1, s1 = m(x[:, :4])
    y2, s2 = m(x[:, 4:], s1)
    assert torch.allclose(torch.cat([y1, y2], 1), ref, atol=1e-5)
    # recurrent steps from a prefilled state == one pass
    st, outs = s1, []
    for t in range(4, 11):
        o, st = m.step(x[:, t], st)
        outs.append(o)
    assert torch.allclose(torch.stack(outs, 1), ref[:, 4:], atol=1e-5)
    assert torch.allclose(st.ssm, s2.ssm, atol=1e-5) and torch.allclose(st.conv, s2.conv)


def test_mamba_parameter_names_follow_mamba_ssm():
    names = {n.split(".")[0] for n, _ in Mamba(16).named_parameters()}
    assert names == {"in_proj", "conv1d", "x_proj", "dt_proj", "A_log", "D", "out_proj"}


def prompts(B=2, T=40, seed=2):
    return torch.randn(B, T, 80, generator=torch.Generator().manual_seed(seed)) - 5.0


@pytest.mark.parametrize("prompt_tokens", [0, 3])
def test_decoder_stepwise_equals_parallel_and_chunked(prompt_tokens):
    m = small_model(prompt_tokens=prompt_tokens)
    memory, mem_len, pos, prev, spk, rate = inputs()
    prompt = prompts() if prompt_tokens else None
    with torch.no_grad():
        full, _ = m(memory, mem_len, pos, prev, spk, rate, prompt=prompt)
        st = m.init_state(2)
        outs = []
        for s in range(pos.shape[1]):
            st.prev_feats = prev[:, s]
            h, st.layers = m.step(memory, mem_len, pos[:, s], spk, rate, st, prompt=prompt)
            outs.append(h)
        assert torch.allclose(torch.stack(outs, 1), full, atol=1e-5)
        h1, s1 = m(memory, mem_len, pos[:, :5], prev[:, :5], spk, rate, prompt=prompt)
        h2, _ = m(memory, mem_len, pos[:, 5:], prev[:, 5:], spk, rate, s1, prompt=prompt)
        assert torch.allclose(torch.cat([h1, h2], 1), full, atol=1e-5)


def test_prompt_encoder_gives_its_tokens_for_any_length_and_ignores_padding():
    m = small_model(prompt_tokens=3)
    enc = m.prompt_encoder
    with torch.no_grad():
        short, long = prompts(1, 25), prompts(1, 60, seed=5)
        assert enc(short).shape == enc(long).shape == (1, 3, 32)
        assert not torch.allclose(enc(short), enc(long), atol=1e-3)  # the tokens depend on the prompt
        padded = torch.cat([short, torch.randn(1, 35, 80) * 9], 1)  # garbage after the prompt, masked out
        mask = torch.arange(60).view(1, 60) < 25
        assert torch.allclose(enc(padded, mask), enc(short), atol=1e-5)
        # the model's terms: embedding tokens then prompt tokens; no prompt = one silent frame
        bias, tokens = m.voice_terms(torch.randn(1, 256), torch.zeros(1), short)
        assert tokens.shape == (1, 2 + 3, 32) and torch.allclose(tokens[:, 2:], enc(short))
        _, none = m.voice_terms(torch.randn(1, 256), torch.zeros(1))
        assert torch.allclose(none[:, 2:], enc(torch.full((1, 1, 80), enc.SILENCE)))


def _cached_steps(m, d, kernel=False):
    """Step the reference ``m.step`` and the cached fast path ``d.decode_step`` side by side
    (kernel: its cross-attention ours); yields both hidden outputs and layer states per step."""
    memory, mem_len, pos, prev, spk, rate = inputs()
    prompt = prompts() if m.cfg.prompt_tokens else None
    with torch.no_grad():
        cond = d.condition(spk, rate, prompt)
        kv = d.text_kv(memory)  # [B, N, X, 2, H, dh]
        st, fast = m.init_state(2), d.init_state(2)
        for s in range(pos.shape[1]):
            st.prev_feats = fast.prev_feats = prev[:, s]
            h, st.layers = m.step(memory, mem_len, pos[:, s], spk, rate, st, prompt=prompt)
            idx, _, valid = band_index(pos[:, s : s + 1], m.cfg.band_back, m.cfg.band_ahead, mem_len)
            band = torch.stack([kv[b, idx[b, 0]] for b in range(2)])
            hf, fast.layers = d.decode_step(band, valid[:, 0], cond, fast, kernel)
            yield h, hf, st.layers, fast.layers


@pytest.mark.parametrize("decoding_copy, kernel, prompt_tokens", [
    (False, False, 0), (True, False, 0), (True, False, 3),
    pytest.param(True, True, 0, marks=pytest.mark.skipif(not kernels.cpu_supported(), reason="no AVX2 here")),
    pytest.param(True, True, 3, marks=pytest.mark.skipif(not kernels.cpu_supported(), reason="no AVX2 here"))])
def test_cached_decode_step_equals_step(decoding_copy, kernel, prompt_tokens):
    """The fast path (keys/values cached per chunk and per stream; on the engine's fp32 copy,
    stepping Mamba layers; its cross-attention torch's or ours) against ``step``, over bands
    that run off either end of the text, with and without a prompt encoder's tokens."""
    if kernel:
        assert kernels.available(), "our kernels are not built: run `make setup`"
    m = small_model(prompt_tokens=prompt_tokens)
    d = for_decoding(m, packed=False, kernel=kernel) if decoding_copy else m
    layout = SteppingMamba.reference_layout if decoding_copy else (lambda st: st)
    for h, hf, layers, fast_layers in _cached_steps(m, d, kernel):
        assert torch.allclose(h, hf, atol=1e-5)
        assert all(torch.allclose(a.ssm, layout(b).ssm, atol=1e-5) for a, b in zip(layers, fast_layers))


MAMBA_KERNELS = [pytest.param(True, marks=pytest.mark.skipif(not kernels.cpu_supported(), reason="no AVX2 here")), False]


@pytest.mark.parametrize("kernel", MAMBA_KERNELS)
def test_stepping_mamba_equals_mamba_step(kernel):
    """Both ways a decoding Mamba layer steps (our fused operations, torch's) against ``Mamba.step``."""
    if kernel:
        assert kernels.available(), "our kernels are not built: run `make setup`"
    torch.manual_seed(0)
    m = Mamba(32)
    fast = SteppingMamba(m, packed=False, kernel=kernel)
    st, fst = m.init_state(2), fast.init_state(2)
    for _ in range(6):
        x = torch.randn(2, 32)
        with torch.no_grad():
            y, st = m.step(x, st)
            yf, fst = fast.step(x, fst)
        ref = SteppingMamba.reference_layout(fst)
        assert torch.allclose(y, yf, atol=1e-5) and torch.allclose(st.ssm, ref.ssm, atol=1e-5)
        assert torch.equal(st.conv, ref.conv)


KERNELS = [pytest.param(True, marks=pytest.mark.skipif(not kernels.cpu_supported(), reason="no AVX2 here")),
           pytest.param(False, marks=pytest.mark.skipif(not torch_int8_supported(), reason="torch's int8 kernel fails here"))]


@pytest.mark.parametrize("kernel", KERNELS)
def test_int8_decoding_stays_close_to_fp32(kernel):
    """Both int8 kernels (ours, torch's) against the dequantized fp32 weights and the fp32 model."""
    if kernel:
        assert kernels.available(), "our kernels are not built: run `make setup`"
    lin = torch.nn.Linear(64, 48)
    packed = PackedLinear(lin, kernel)
    x = torch.randn(5, 64)
    assert torch.allclose(packed(x), packed.reference(x), rtol=0.02, atol=0.02)
    assert (packed.reference(x) - lin(x)).abs().max() < 0.02 * lin(x).abs().max()
    m = small_model()
    d = for_decoding(m, packed=True, kernel=kernel)
    assert any(isinstance(mod, PackedLinear) for mod in d.modules())
    assert not any(isinstance(mod, PackedLinear) for mod in m.modules())  # the caller's model is untouched
    for h, hf, _, _ in _cached_steps(m, d, kernel):
        assert (h - hf).norm() < 0.03 * h.norm()


@pytest.mark.parametrize("kernel", [pytest.param(True, marks=pytest.mark.skipif(not kernels.cpu_supported(),
                                                                                 reason="no AVX2 here")), False])
def test_the_engines_backend_is_chosen_once_and_reaches_every_layer(kernel):
    """Engine(kernel=...) puts every layer that has two ways to run on that one backend: the
    int8 linears, the Mamba steps and the step function's cross-attention and code mixing."""
    if kernel:
        assert kernels.available(), "our kernels are not built: run `make setup`"
    eng = Engine(small_model(), 86.13, DecodeSettings(packed=kernel or torch_int8_supported()), kernel)
    layers = [mod for mod in eng.model.modules() if isinstance(mod, (PackedLinear, SteppingMamba))]
    assert any(isinstance(mod, PackedLinear) for mod in layers) and any(isinstance(mod, SteppingMamba) for mod in layers)
    assert all(mod.kernel is kernel for mod in layers)
    assert eng.kernel is kernel and eng._step.fn.kernel is kernel
    if not kernel:  # the reference backend runs without the library (it may be missing)
        assert not any(mod.kernel for mod in eng.model.modules() if hasattr(mod, "kernel"))


def test_asking_for_our_kernels_where_they_are_missing_is_a_one_line_error(monkeypatch):
    from narrate.errors import NarrateError

    monkeypatch.setattr(kernels, "available", lambda: False)
    assert kernels.choose() is False and kernels.choose(False) is False
    with pytest.raises(NarrateError, match="^our CPU kernels are not available here") as e:
        kernels.choose(True)
    assert "\n" not in str(e.value)
    eng = Engine(small_model(), 86.13, DecodeSettings(packed=False))  # chosen by the engine: torch's
    assert eng.kernel is False and not any(getattr(mod, "kernel", False) for mod in eng.model.modules())


@pytest.mark.skipif(not kernels.cpu_supported(), reason="no AVX2 here")
@pytest.mark.parametrize("out, inner", [(37, 32), (48, 512), (1024, 256), (5, 16)])
def test_int8_kernel_rows_do_not_depend_on_the_batch(out, inner):
    """Our kernel (``make setup`` builds it): each row's output is the same whether it is computed
    alone or with others, to the last bit, for every row count and block shape, and it matches
    the product of the dequantized weights within what the row's int16 quantization allows."""
    assert kernels.available(), "our kernels are not built: run `make setup`"
    g = torch.Generator().manual_seed(out)
    q = torch.randint(-127, 128, (out, inner), dtype=torch.int8, generator=g)
    scale, bias = torch.rand(out, generator=g) / 50, torch.randn(out, generator=g)
    x = torch.randn(11, inner, generator=g)
    panels = kernels.panels(q)
    assert torch.equal(kernels.unpanel(panels, out), q)
    full = torch.ops.narrate.int8_linear(x, panels, scale, bias)
    for m in range(1, 11):
        assert torch.equal(torch.ops.narrate.int8_linear(x[:m], panels, scale, bias), full[:m])
        assert torch.equal(torch.ops.narrate.int8_linear(x[m : m + 1], panels, scale, bias), full[m : m + 1])
    w = q.double() * scale.double()[:, None]
    ref = torch.addmm(bias.double(), x.double(), w.t())
    # each input off by at most half a quantization step, amax / (2 Q), Q = 32767 for these sizes
    half_step = x.abs().amax(1, keepdim=True).double() / (2 * 32767)
    bound = half_step * w.abs().sum(1) + 1e-5 * ref.abs() + 1e-5
    assert ((full.double() - ref).abs() <= bound).all()
    assert ((full.double() - ref).abs() > 1e-3 * bound).any()  # the bound is not loose by orders
    assert torch.allclose(torch.ops.narrate.int8_linear(x, panels, scale, None), full - bias, atol=1e-5)
    with pytest.raises(RuntimeError, match="bias"):  # a wrong size is refused, not read past its end
        torch.ops.narrate.int8_linear(x, panels, scale, bias[:-1])


@pytest.mark.skipif(not kernels.cpu_supported(), reason="no AVX2 here")
def test_fused_mamba_rows_do_not_depend_on_the_batch():
    """Our Mamba step operations: a stream's output and new state are the same, to the last bit,
    stepped alone or beside others (inputs as the layer passes them: strided column slices)."""
    assert kernels.available(), "our kernels are not built: run `make setup`"
    g = torch.Generator().manual_seed(3)
    B, D, N, H = 5, 48, 8, 3
    w, b, A2, skip = (torch.randn(H + 1, D, generator=g), torch.randn(D, generator=g),
                      -torch.rand(N, D, generator=g) * 4, torch.randn(D, generator=g))
    conv, h = torch.randn(B, H, D, generator=g), torch.randn(B, N, D, generator=g)
    alone = [(conv[i : i + 1].clone(), h[i : i + 1].clone()) for i in range(B)]
    for _ in range(3):
        xz, dbc = torch.randn(B, 2 * D, generator=g), torch.randn(B, 3 + 2 * N, generator=g)
        dt = torch.rand(B, D, generator=g)
        xc = torch.ops.narrate.conv_step(xz, conv, w, b)
        y = torch.ops.narrate.ssm_step(dt, xc, dbc[:, 3:], xz[:, D:], A2, skip, h)
        for i, (c1, h1) in enumerate(alone):
            r = slice(i, i + 1)
            xc1 = torch.ops.narrate.conv_step(xz[r], c1, w, b)
            y1 = torch.ops.narrate.ssm_step(dt[r], xc1, dbc[r, 3:], xz[r, D:], A2, skip, h1)
            assert torch.equal(xc1, xc[r]) and torch.equal(y1, y[r])
            assert torch.equal(c1, conv[r]) and torch.equal(h1, h[r])


@pytest.mark.skipif(not kernels.cpu_supported(), reason="no AVX2 here")
@pytest.mark.parametrize("n, F", [(1536, 80), (48, 8), (40, 133)])
def test_rowwise_mm_rows_do_not_depend_on_the_batch(n, F):
    """Our row-by-row product (it mixes code vectors by their probabilities): each row the same
    alone or with others, to the last bit, and the product in double precision up to fp32 rounding."""
    assert kernels.available(), "our kernels are not built: run `make setup`"
    g = torch.Generator().manual_seed(n)
    x, w = torch.randn(9, n, generator=g).softmax(-1), torch.randn(n, F, generator=g)
    full = torch.ops.narrate.rowwise_mm(x, w)
    for m in range(9):
        assert torch.equal(torch.ops.narrate.rowwise_mm(x[m : m + 1], w), full[m : m + 1])
    ref = x.double() @ w.double()
    assert torch.allclose(full.double(), ref, rtol=1e-5, atol=1e-6)
    assert torch.allclose(torch.ops.narrate.rowwise_mm(x.t().contiguous().t(), w), full)  # any layout in


def test_band_attention_equals_masked_reference():
    torch.manual_seed(0)
    att = TextCrossAttention(32, 2, 10000.0)
    memory, mem_len, pos, _, _, _ = inputs()
    x = torch.randn(2, pos.shape[1], 32)
    spk = torch.randn(2, 3, 32)
    idx, rel, valid = band_index(pos, 2, 3, mem_len)
    fast = att(x, gather_band(memory, idx), rel, valid, spk)
    slow = att.reference(x, memory, mem_len, pos, 2, 3, spk)
    assert torch.allclose(fast, slow, atol=1e-5)


def test_rotary_positions_are_relative():
    """Shifting the whole text and the tracked position together changes nothing."""
    torch.manual_seed(0)
    att = TextCrossAttention(32, 2, 10000.0)
    memory = torch.randn(1, 40, 32)
    x, spk = torch.randn(1, 1, 32), torch.randn(1, 2, 32)
    a = att.reference(x, memory[:, :20], torch.tensor([20]), torch.tensor([[8]]), 2, 3, spk)
    b = att.reference(x, torch.cat([memory[:, 20:], memory[:, :20]], 1), torch.tensor([40]), torch.tensor([[28]]), 2, 3, spk)
    assert torch.allclose(a, b, atol=1e-5)


def chunk(n, start_word=0):
    ids = [int(i) for i in (torch.arange(n) % 40 + 4)]
    words = [i // 4 for i in range(n)]
    return ids, words, [f"w{i}" for i in range(start_word, start_word + n // 4 + 1)]


def run(engine, state, max_steps=500):
    outs = []
    for out in engine.frames(state):
        outs.append(out)
        if len(outs) >= max_steps:
            break
    return outs


def test_state_carried_across_chunks_equals_one_pass():
    m = small_model()
    eng = Engine(m, 86.13, DecodeSettings(SamplingSettings(temperature=0.8)))
    a, b = chunk(24), chunk(20)
    one = eng.new_stream(torch.ones(256), seed=3)
    eng.append(one, *a)
    eng.append(one, *b)
    eng.close(one)
    ref = run(eng, one)
    two = eng.new_stream(torch.ones(256), seed=3)
    eng.append(two, *a)
    outs = []
    while two.position < 24 - m.cfg.band_ahead - 2:  # second chunk arrives while the first is spoken
        outs.append(eng.step([two])[0])
    eng.append(two, *b)
    eng.close(two)
    outs += run(eng, two)
    assert len(outs) == len(ref)
    assert all(torch.equal(x.codes, y.codes) for x, y in zip(outs, ref))
    assert ref[-1].stopped and one.done


def test_batched_streams_equal_streams_alone():
    """Streams with voices of their own (embedding and prompts of different lengths) decoded
    together give what each gives alone, to the last bit."""
    m = small_model(prompt_tokens=3)
    eng = Engine(m, 86.13, DecodeSettings(SamplingSettings(temperature=0.7)))
    texts = [chunk(30), chunk(18), chunk(25)]
    voice = [prompts(1, 20 + 15 * i, seed=i)[0] for i in range(3)]
    alone = []
    for i, t in enumerate(texts):
        s = eng.new_stream(torch.full((256,), float(i)), seed=i, prompt=voice[i])
        eng.append(s, *t)
        eng.close(s)
        alone.append(run(eng, s))
    states = []
    for i, t in enumerate(texts):
        s = eng.new_stream(torch.full((256,), float(i)), seed=i, prompt=voice[i])
        eng.append(s, *t)
        eng.close(s)
        states.append(s)
    together = [[] for _ in texts]
    steps = 0
    while any(s.active for s in states):
        act = [i for i, s in enumerate(states) if s.active]
        if steps % 3 == 2:  # now and then streams leave the batch and rejoin it: each keeps its own state
            act = act[-1:]
        steps += 1
        for i, o in zip(act, eng.step([states[i] for i in act])):
            together[i].append(o)
    for a, b in zip(alone, together):
        assert len(a) == len(b)
        assert all(torch.equal(x.codes, y.codes) for x, y in zip(a, b))
        assert all(torch.equal(x.feats, y.feats) for x, y in zip(a, b))  # exactly: fed back, rounding would grow


@pytest.mark.parametrize("packed, emit, temperature", [(False, "mean", 0.7), (True, "codes", 0.7), (False, "mean", 0.0)])
def test_recorded_steps_equal_the_step_function_run_directly(packed, emit, temperature):
    """The recorded graphs (one per batch size) replay the step function exactly: the same codes,
    frames, positions and word timings, over batches that change as streams pause and rejoin."""
    m = small_model()

    def steps(traced):
        eng = Engine(m, 86.13, DecodeSettings(SamplingSettings(temperature=temperature), emit=emit, packed=packed,
                                              traced=traced))
        states = []
        for i, n in enumerate([30, 18, 25]):
            s = eng.new_stream(torch.full((256,), float(i)), seed=i)
            eng.append(s, *chunk(n))
            eng.close(s)
            states.append(s)
        outs, k = [], 0
        while any(s.active for s in states):
            act = [s for s in states if s.active]
            k += 1
            outs.append(eng.step(act[-1:] if k % 3 == 2 else act))
        return eng, outs

    recorded, a = steps(True)
    direct, b = steps(False)
    assert {1, 3} <= set(recorded._step.graphs)  # a graph per batch size met
    assert not direct._step.graphs
    assert len(a) == len(b)
    for x, y in zip(sum(a, []), sum(b, [])):
        assert torch.equal(x.codes, y.codes) and torch.equal(x.feats, y.feats)
        assert x.position == y.position and x.words == y.words and x.stopped == y.stopped


def test_window_slides_over_100k_tokens_with_bounded_memory():
    m = small_model()
    eng = Engine(m, 86.13, DecodeSettings(window_past=1))
    s = eng.new_stream(torch.ones(256))
    sizes, rss = [], []
    total = 0
    for k in range(200):  # 200 chunks x 500 tokens = 100,000 tokens
        ids, words, texts = chunk(500, s.n_words)
        eng.append(s, ids, words, texts)
        total += 500
        # speak a few real steps, then let the position run to near the end of the text
        for _ in range(3):
            eng.step([s])
        s.position = total - 10
        eng.step([s])
        sizes.append((len(s.chunks), sum(c.kv.numel() for c in s.chunks) + s.window.numel(), len(s.word_text)))
        if k % 50 == 0:
            gc.collect()
            rss.append(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    assert s.n_tokens == 100_000
    assert max(n for n, _, _ in sizes) <= 3
    per_token = 2 * 2 * 32  # 2 cross layers x (key, value) x d_model
    assert max(e for _, e, _ in sizes) <= 2 * 3 * 500 * per_token
    assert max(w for _, _, w in sizes) <= 3 * 126
    assert rss[-1] - rss[1] < 20_000  # kB: no growth with the text


def test_guidance_boosts_and_never_forces():
    probs = torch.tensor([0.1, 0.2, 0.3, 0.1, 0.3])
    ok = torch.tensor([True, True, True, True, False])
    g = torch.tensor(guide(probs.tolist(), ok.tolist(), 1.0))
    assert g[4] == 0  # STOP not allowed here
    assert torch.isclose(g.sum(), torch.tensor(1.0))
    # the boosted moves gain relative to the others by exactly (1 + lambda)
    assert torch.isclose(g[0] / g[2], 2 * probs[0] / probs[2])
    assert torch.isclose(g[1] / g[3], 2 * probs[1] / probs[3])
    assert (g[ok] > 0).all()  # nothing allowed is ruled out
    assert torch.allclose(torch.tensor(guide(probs.tolist(), ok.tolist(), 0.0)), probs * ok / (probs * ok).sum())
    # even a huge lambda leaves the other moves possible
    assert guide(probs.tolist(), ok.tolist(), 1e3)[2] > 0
    assert guide([0.0, 0.0, 0.0, 0.0, 1.0], ok.tolist(), 1.0) == [0.25, 0.25, 0.25, 0.25, 0.0]  # mass only on the impossible


def test_allowed_moves():
    gs = GuidanceSettings(max_move=2, stop_margin=2)
    assert allowed_moves(3, 20, 5, gs) == [True, True, True, False, False]
    assert allowed_moves(18, 20, 5, gs) == [True, True, False, False, True]
    for position in range(20):
        ok = allowed_moves(position, 20, 5, gs)
        assert ok[4] == (position >= 17)  # STOP within stop_margin tokens of the last one
        assert ok[:3] == [position + move <= 19 for move in range(3)]  # never past the last token
        assert not ok[3]  # beyond max_move
    assert allowed_moves(0, 1, 5, GuidanceSettings(max_move=3, stop_margin=0)) == [True, False, False, False, True]


def test_stream_stops_and_yields_word_timestamps():
    m = small_model()
    eng = Engine(m, 86.13)
    s = eng.new_stream(torch.ones(256))
    ids, words, texts = chunk(24)
    eng.append(s, ids, words, texts)
    eng.close(s)
    outs = run(eng, s)
    assert s.done and outs[-1].stopped
    timed = [w for o in outs for w in o.words]
    assert [w.text for w in timed] == texts[: len(timed)] and len(timed) >= 5
    assert all(w.end > w.start for w in timed)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(timed, timed[1:]))


def test_open_stream_pauses_then_continues():
    m = small_model()
    eng = Engine(m, 86.13)
    s = eng.new_stream(torch.ones(256))
    eng.append(s, *chunk(12))
    run(eng, s)
    assert s.paused and not s.done  # STOP at the end of text that may still grow
    eng.append(s, *chunk(12, 4))
    assert s.active
    eng.close(s)
    run(eng, s)
    assert s.done and s.position >= 24 - 1 - eng.settings.guidance.stop_margin


def test_sampling_seed_reproducible_and_filters():
    logits = torch.randn(6, 50)
    st = SamplingSettings(temperature=1.0, top_k=5)
    a = sample(logits, st, torch.Generator().manual_seed(7))
    b = sample(logits, st, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    top5 = logits.topk(5, -1).indices
    assert all(int(a[i]) in top5[i].tolist() for i in range(6))
    assert torch.equal(sample(logits, SamplingSettings(temperature=0)), logits.argmax(-1))
    f = filter_logits(torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])), 0, 0.7)
    assert torch.isfinite(f).tolist() == [[True, True, False, False]]


def test_sampling_draws_from_the_softmax_like_multinomial():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -9.0]]).expand(20000, -1)
    st = SamplingSettings(temperature=0.8, top_k=4)
    fast = torch.bincount(sample(logits, st, torch.Generator().manual_seed(1)), minlength=5) / 20000
    slow = torch.bincount(reference_sample(logits, st, torch.Generator().manual_seed(2)), minlength=5) / 20000
    want = torch.cat([(logits[0, :4] / 0.8).softmax(-1), torch.zeros(1)])
    assert (fast - want).abs().max() < 0.015 and (slow - want).abs().max() < 0.015
    assert fast[4] == 0  # top-k removed it


def test_engine_draws_ahead_the_numbers_drawn_step_by_step():
    """A stream draws DRAW_AHEAD steps' sampling numbers at once: the very numbers that drawing
    at every step (``sampling.draws``, the reference) gives, across refills, whatever its batch."""
    eng = Engine(small_model(), 86.13, DecodeSettings(SamplingSettings(temperature=0.7)))
    a, b = eng.new_stream(torch.ones(256), seed=3), eng.new_stream(torch.ones(256), seed=4)
    ref = [torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)]
    shape = (eng.cfg.reduction, eng.cfg.n_codebooks)
    n = 2 * DRAW_AHEAD + 7
    for k in range(n):
        if k % 5 == 4:  # now and then stream a steps alone
            assert torch.equal(eng._draws([a]), draws(ref[:1], shape))
        else:
            assert torch.equal(eng._draws([a, b]), draws(ref, shape))
    assert a.drawn == n - 2 * DRAW_AHEAD and b.drawn == n - n // 5 - DRAW_AHEAD  # both refilled on the way


def test_adaptive_codebook_weights_match_reference():
    p = torch.rand(7, 6)
    fast = adaptive_codebook_weights(p, 0.1, 0.5)
    for i in range(7):
        assert torch.allclose(fast[i], reference_adaptive_weights(p[i], 0.1, 0.5), atol=1e-6)
    w = adaptive_codebook_weights(torch.tensor([[0.9, 0.9, 0.2, 0.7]]))
    assert w[0, 0] == 1 and w[0, 1] == 0 and w[0, 3] == 0 and 0 < w[0, 2] <= 1


def test_bucketed_conv_is_the_plain_convolution_at_every_length():
    from narrate.engine.model import LENGTH_BUCKET, bucketed_conv

    torch.manual_seed(0)
    conv = torch.nn.Conv1d(8, 8, 5, padding=2)
    for n in (1, 2, 5, LENGTH_BUCKET - 1, LENGTH_BUCKET, LENGTH_BUCKET + 1, 3 * LENGTH_BUCKET + 7):
        x = torch.randn(2, 8, n)
        out = bucketed_conv(conv, x)
        assert out.shape == (2, 8, n)
        torch.testing.assert_close(out, conv(x), rtol=1e-5, atol=1e-5)
