"""Synthesised music by one imaginary artist: the audio of the demo catalogue.

The quickstart recipe and the tests need a catalogue that exists on every machine, costs
nothing to make and has a recognisable style, so that a fine-tuned model has something to
learn and Fréchet Audio Distance has a real "in style" reference
(:func:`stylecraft.data.demo.make_demo_catalogue` writes it). The same audio doubles as
deterministic calibration input for tiny random models (:mod:`stylecraft.models.presets`).

Everything the artist "always does" is fixed in the module constants below: Dorian mode, a
96-112 BPM swung groove, the instrument timbres and the drum pattern. Only what would differ
between one song and the next (key, tempo, chord progressions, melody, small timing and
velocity variations) is drawn from the seed.

Rendering is vectorised over samples: monophonic lines (bass, lead, each pad voice) are built
from per-sample arrays of "which note is sounding and for how long", drums by scattering
pre-rendered one-shots with ``np.bincount``. There is no per-sample Python loop, so a 40 s
stereo track at 32 kHz takes a fraction of a second. Same arguments give the same bits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import signal

__all__ = ["synth_track"]

# --------------------------------------------------------------------------------------------
# The artist's style. Changing any of these changes every track of every demo catalogue.
# --------------------------------------------------------------------------------------------

_DORIAN = np.array([0, 2, 3, 5, 7, 9, 10])
# Tonic pitch classes (D, E, G, A): a small set so tracks share a tonal colour.
_KEYS = (2, 4, 7, 9)
_BPM_RANGE = (96, 112)
# Off-beat sixteenths land this fraction of a step late: the "lazy" feel of the artist.
_SWING = 0.16
_STEPS_PER_BAR = 16

# Chord progressions as Dorian scale degrees (0 = i), one chord per bar. All are built as
# diatonic seventh chords; degree 5 (half-diminished) is avoided on purpose.
_PROGRESSIONS = (
    (0, 3, 0, 3),  # i7 - IV7 vamp, the Dorian signature
    (0, 6, 3, 0),  # i7 - VIImaj7 - IV7 - i7
    (0, 2, 6, 3),  # i7 - IIImaj7 - VIImaj7 - IV7
    (0, 4, 6, 3),  # i7 - v7 - VIImaj7 - IV7
    (3, 0, 6, 4),  # IV7 - i7 - VIImaj7 - v7
    (0, 1, 2, 3),  # i7 - ii7 - IIImaj7 - IV7 (stepwise climb)
)
# Song form in 4-bar sections: progression A, A, B, A, repeating.
_FORM = (0, 0, 1, 0)

# Drum groove, in sixteenth steps of a 4/4 bar.
_KICK_STEPS = (0, 7, 10)
_KICK_STEPS_TURN = (0, 7, 10, 13)  # last bar of a 4-bar phrase
_SNARE_STEPS = (4, 12)
_SNARE_FILL = ((4, 1.0), (12, 1.0), (13, 0.35), (14, 0.55), (15, 0.75))  # last bar of 8
# Closed hat velocity per step: off-beat eighths accented, sixteenth ghosts soft.
_HAT_VEL = np.array([0.7, 0.0, 1.0, 0.3, 0.7, 0.0, 1.0, 0.35] * 2)
_OPEN_HAT_STEP = 14  # open hat on "the and of four" every second bar

# Bass riff relative to the bar's chord: (step, scale degrees above the chord root, gate in
# steps). The octave jump and fifth are what makes it sound like the same player every time.
_BASS_RIFF = ((0, 0, 2.5), (3, 0, 1.0), (6, 7, 1.5), (8, 0, 2.0), (10, 4, 1.5), (13, 0, 0.8), (14, 2, 1.5))

# Registers (MIDI note ranges [lo, lo + 12)) each instrument folds its pitches into.
_BASS_LO = 33  # A1: keeps the bass fundamental under ~105 Hz
_PAD_LO = 55  # G3
_LEAD_TONIC_LO = 67  # lead tonic somewhere in G4..F#5

# Pan positions in [-1, 1] (left..right): small differences give the mix its width.
_PAN = {"kick": 0.0, "bass": 0.0, "snare": -0.12, "hat": 0.35, "open_hat": 0.3, "lead": -0.2}

# Fades, capped to a quarter of the track so very short excerpts keep some full-level audio.
_FADE_IN_S = 0.05
_FADE_OUT_S = 0.6
_PEAK = 0.9

# Audio-rate buffers are float32: numpy's float32 transcendental functions are vectorised and
# several times faster, and the output is float32 anyway. Phases are accumulated in float64.
_F = np.float32

_MIN_SAMPLE_RATE = 8000


@dataclass(frozen=True)
class _Plan:
    """Per-track musical choices drawn from the seed."""

    tonic: int  # pitch class 0..11
    bpm: float
    progressions: tuple[tuple[int, ...], tuple[int, ...]]  # sections A and B
    n_bars: int
    intro_bars: int  # bars of pad + hats only
    lead_start: int  # first bar of the lead melody

    @property
    def step_s(self) -> float:
        return 60.0 / self.bpm / 4.0

    @property
    def bar_s(self) -> float:
        return self.step_s * _STEPS_PER_BAR

    def chord(self, bar: int) -> int:
        """Scale degree of the chord root played in ``bar``."""
        section = _FORM[(bar // 4) % len(_FORM)]
        return self.progressions[section][bar % 4]


# --------------------------------------------------------------------------------------------
# Small DSP helpers
# --------------------------------------------------------------------------------------------


def _midi_to_hz(midi: np.ndarray) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _degree_to_semitone(degree: np.ndarray) -> np.ndarray:
    """Dorian scale degree (any integer, 7 = octave) to semitones above the tonic."""
    degree = np.asarray(degree, dtype=np.int64)
    return 12 * (degree // 7) + _DORIAN[degree % 7]


def _fold(midi: np.ndarray, lo: int) -> np.ndarray:
    """Move notes by octaves into [lo, lo + 12); gives automatic, smooth chord inversions."""
    midi = np.asarray(midi, dtype=np.int64)
    return lo + (midi - lo) % 12


def _step_time(bar: np.ndarray, step: np.ndarray, step_s: float) -> np.ndarray:
    """Onset time in seconds of a sixteenth step, with the artist's swing on odd steps."""
    step = np.asarray(step, dtype=np.float64)
    swung = step + _SWING * (np.floor(step) % 2)
    return (np.asarray(bar, dtype=np.float64) * _STEPS_PER_BAR + swung) * step_s


def _wrap(cycles: np.ndarray, scale: float = 1.0, offset: float = 0.0) -> np.ndarray:
    """Fractional part of ``cycles * scale + offset`` as float32 in [0, 1).

    The float64 product keeps phase exact over long tracks; only the wrapped value, which
    float32 represents well, goes on to the audio-rate maths.
    """
    p = cycles * scale if scale != 1.0 else cycles.copy()
    if offset:
        p += offset
    np.subtract(p, np.floor(p), out=p)
    return p.astype(_F)


def _saw(t: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Sawtooth in [-1, 1] from a wrapped phase ``t`` in [0, 1), with PolyBLEP anti-aliasing.

    ``dt`` is the per-sample phase increment (frequency / sample rate). A naive saw folds
    harmonics above Nyquist back as inharmonic whistles; smoothing the jump over one sample
    either side of the wrap removes most of them, and only touches the few samples next to a
    wrap.
    """
    y = t * _F(2.0)
    y -= _F(1.0)
    lo = np.flatnonzero(t < dt)
    x = t[lo] / dt[lo]
    y[lo] -= 2.0 * x - x * x - 1.0
    s = t + dt
    hi = np.flatnonzero(s > 1.0)
    x = (t[hi] - 1.0) / dt[hi]
    y[hi] -= x * x + 2.0 * x + 1.0
    return y


def _pan(mono: np.ndarray, pos: float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-power pan so moving an instrument does not change its loudness."""
    angle = (pos + 1.0) * math.pi / 4.0
    return mono * _F(math.cos(angle)), mono * _F(math.sin(angle))


def _delay(x: np.ndarray, d: int) -> np.ndarray:
    out = np.zeros_like(x)
    if d < len(x):
        out[d:] = x[: len(x) - d]
    return out


def _place(n: int, onsets: np.ndarray, gains: np.ndarray, one_shot: np.ndarray) -> np.ndarray:
    """Mix copies of ``one_shot`` starting at sample ``onsets`` scaled by ``gains``.

    ``np.bincount`` with weights does the overlap-add in one vectorised call and always sums in
    the same order, so the result is bit-for-bit reproducible.
    """
    keep = (onsets >= 0) & (onsets < n)
    onsets, gains = onsets[keep], gains[keep]
    if len(onsets) == 0:
        return np.zeros(n, dtype=_F)
    idx = onsets[:, None] + np.arange(len(one_shot))[None, :]
    w = gains[:, None] * one_shot[None, :]
    inside = idx < n
    return np.bincount(idx[inside], weights=w[inside], minlength=n)[:n].astype(_F)


@dataclass(frozen=True)
class _Clock:
    """Per-sample view of a monophonic note sequence."""

    note: np.ndarray  # index of the note sounding at each sample
    t: np.ndarray  # seconds since that note's onset (float32)
    slot: np.ndarray  # seconds from that note's onset to the next onset or the end (float32)


def _note_clock(n: int, sr: int, onsets: np.ndarray) -> _Clock:
    """Build the per-sample note clock for sorted, unique, in-range onsets (first one at 0)."""
    marks = np.zeros(n, dtype=np.int32)
    marks[onsets] = 1
    note = np.cumsum(marks, dtype=np.int32)
    note -= 1
    ends = np.append(onsets[1:], n)
    # Samples since onset fit float32 exactly (< 2**24, i.e. over 8 minutes at 32 kHz).
    since = np.arange(n, dtype=np.int32)
    since -= onsets.astype(np.int32)[note]
    t = since.astype(_F) * _F(1.0 / sr)
    slot = ((ends - onsets) / sr).astype(_F)[note]
    return _Clock(note=note, t=t, slot=slot)


def _prepare_notes(
    n: int, sr: int, times: np.ndarray, *columns: np.ndarray
) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Convert onset times to samples, drop notes past the end, and pad a silent note at 0.

    The silent leading note means every sample belongs to some note, so renderers need no
    "before the first note" special case. Column 0 of ``columns`` must be the velocity.
    """
    onsets = np.rint(np.asarray(times) * sr).astype(np.int64)
    keep = onsets < n
    onsets = onsets[keep]
    cols = tuple(np.asarray(c)[keep] for c in columns)
    if len(onsets) == 0 or onsets[0] > 0:
        first = tuple(np.asarray([c[0] if len(c) else 0.0]) for c in cols)
        first = (np.zeros(1),) + first[1:]  # silent
        onsets = np.concatenate([[0], onsets])
        cols = tuple(np.concatenate([f, c]) for f, c in zip(first, cols, strict=True))
    return onsets, cols


def _envelope(
    clock: _Clock, gate: np.ndarray, attack: float, decay: float | None, release: float, ramp: float
) -> np.ndarray:
    """Per-sample amplitude envelope of a monophonic line.

    Attack ramp, optional exponential decay, exponential release after the gate, and a short
    linear ramp to zero just before the next onset: pitch changes then happen at zero level,
    which keeps note boundaries click-free.
    """
    t = clock.t
    env = t * _F(1.0 / attack)
    np.minimum(env, _F(1.0), out=env)
    if decay is not None:
        env *= np.exp(t * _F(-1.0 / decay))
    after = t - gate.astype(_F)[clock.note]
    np.maximum(after, _F(0.0), out=after)
    after *= _F(-1.0 / release)
    env *= np.exp(after, out=after)
    tail = clock.slot - t
    tail *= _F(1.0 / ramp)
    env *= np.clip(tail, _F(0.0), _F(1.0), out=tail)
    return env


# --------------------------------------------------------------------------------------------
# Planning: the seeded, per-track musical decisions
# --------------------------------------------------------------------------------------------


def _plan(rng: np.random.Generator, duration_s: float) -> _Plan:
    tonic = int(_KEYS[rng.integers(len(_KEYS))])
    bpm = float(rng.integers(_BPM_RANGE[0], _BPM_RANGE[1] + 1))
    a, b = rng.choice(len(_PROGRESSIONS), size=2, replace=False)
    bar_s = 60.0 / bpm * 4.0
    n_bars = int(math.ceil(duration_s / bar_s)) + 1
    # Short excerpts start straight in the groove; full tracks get a pad + hats intro and hold
    # the melody back a little, like a real arrangement.
    long_form = n_bars >= 12
    return _Plan(
        tonic=tonic,
        bpm=bpm,
        progressions=(_PROGRESSIONS[a], _PROGRESSIONS[b]),
        n_bars=n_bars,
        intro_bars=2 if long_form else 0,
        lead_start=4 if long_form else 0,
    )


def _phrase_rhythm(rng: np.random.Generator, closing: bool) -> np.ndarray:
    """Onset flags for 2 bars of eighth notes (16 slots)."""
    probs = np.array([0.95, 0.3, 0.65, 0.5, 0.8, 0.35, 0.6, 0.45, 0.85, 0.3, 0.6, 0.5, 0.7, 0.3, 0.4, 0.2])
    on = rng.random(16) < probs
    on[0] = True
    if closing:
        # The answer phrase ends on a held note on beat 1 of its second bar, then breathes.
        on[9:] = False
        on[8] = True
    else:
        on[15] = False
    return on


def _contour(rng: np.random.Generator, count: int, start: int) -> np.ndarray:
    """Scale-degree random walk: mostly steps, some skips, kept in a singable range."""
    steps = rng.choice([-3, -2, -1, 0, 1, 2, 3], size=count, p=[0.05, 0.15, 0.3, 0.05, 0.25, 0.15, 0.05])
    out = np.empty(count, dtype=np.int64)
    d = start
    for i in range(count):  # a few dozen notes per track, not samples
        d += int(steps[i])
        if d < -2 or d > 9:
            d -= 2 * int(steps[i])
        out[i] = d
    return out


def _nearest_chord_tone(degree: int, chord_root: int) -> int:
    tones = {(chord_root + k) % 7 for k in (0, 2, 4, 6)}
    for delta in (0, -1, 1, -2, 2, -3, 3):
        if (degree + delta) % 7 in tones:
            return degree + delta
    raise AssertionError("every degree is within 3 of a seventh-chord tone")


def _melody(rng: np.random.Generator, plan: _Plan) -> tuple[np.ndarray, ...]:
    """Lead notes as arrays (onset_s, velocity, midi, gate_s).

    A 2-bar motif ("call") and two 2-bar answers are drawn once per track and alternated, so
    the melody is memorable rather than a random walk; strong beats snap to chord tones of the
    bar they land in, which keeps it consonant over any progression.
    """
    call = _phrase_rhythm(rng, closing=False)
    answers = [_phrase_rhythm(rng, closing=True) for _ in range(2)]
    call_deg = _contour(rng, 16, start=int(rng.choice([0, 2, 4])))
    answer_deg = [_contour(rng, 16, start=int(rng.choice([2, 4]))) for _ in range(2)]
    jitter = rng.uniform(-0.05, 0.05, size=plan.n_bars * 8)

    times: list[float] = []
    vels: list[float] = []
    degs: list[int] = []
    lens: list[int] = []
    eighth = plan.step_s * 2.0
    for bar in range(plan.lead_start, plan.n_bars):
        pos = (bar - plan.lead_start) % 4
        phrase_no = (bar - plan.lead_start) // 4
        if pos < 2:
            flags, contour = call, call_deg
        else:
            flags, contour = answers[phrase_no % 2], answer_deg[phrase_no % 2]
        half = (pos % 2) * 8
        on_slots = np.flatnonzero(flags)
        for slot in range(8):
            s = half + slot
            if not flags[s]:
                continue
            later = on_slots[on_slots > s]
            length = int(later[0] - s) if len(later) else 16 - s
            degree = int(contour[s])
            if slot % 4 == 0:
                degree = _nearest_chord_tone(degree, plan.chord(bar))
            times.append((bar * 8 + slot) * eighth)
            vels.append(0.8 + (0.12 if slot % 2 == 0 else 0.0) + jitter[bar * 8 + slot])
            degs.append(degree)
            lens.append(min(length, 4))
    if not times:
        return (np.zeros(0),) * 4
    midi = _LEAD_TONIC_LO + (plan.tonic - _LEAD_TONIC_LO) % 12 + _degree_to_semitone(np.array(degs))
    gate = np.array(lens, dtype=np.float64) * eighth * 0.8
    return np.array(times), np.array(vels), midi, gate


# --------------------------------------------------------------------------------------------
# Instruments
# --------------------------------------------------------------------------------------------


def _render_bass(n: int, sr: int, plan: _Plan, rng: np.random.Generator) -> np.ndarray:
    """Saw + square through a 4-pole low-pass, with a sine sub for weight."""
    bars = np.arange(plan.intro_bars, plan.n_bars)
    if len(bars) == 0:
        return np.zeros(n, dtype=_F)
    steps = np.array([r[0] for r in _BASS_RIFF], dtype=np.float64)
    offs = np.array([r[1] for r in _BASS_RIFF])
    gates = np.array([r[2] for r in _BASS_RIFF])
    bar_grid = np.repeat(bars, len(steps))
    roots = np.repeat([plan.chord(int(b)) for b in bars], len(steps))
    # Fold the chord root into the bass register, then add the riff's interval on top of it so
    # octave jumps stay octave jumps.
    root_midi = _fold(plan.tonic + _degree_to_semitone(roots), _BASS_LO)
    offset = _degree_to_semitone(roots + np.tile(offs, len(bars))) - _degree_to_semitone(roots)
    midi = root_midi + offset
    times = _step_time(bar_grid, np.tile(steps, len(bars)), plan.step_s)
    vel = 0.85 + 0.15 * (np.tile(steps, len(bars)) % 4 == 0) + rng.uniform(-0.04, 0.04, len(times))
    gate_s = np.tile(gates, len(bars)) * plan.step_s

    onsets, (vel, freq, gate_s) = _prepare_notes(n, sr, times, vel, _midi_to_hz(midi), gate_s)
    clock = _note_clock(n, sr, onsets)
    cycles = np.cumsum(freq[clock.note] / sr)
    dt = (freq / sr).astype(_F)[clock.note]
    t = _wrap(cycles)
    saw = _saw(t, dt)
    square = saw - _saw(_wrap(cycles, offset=0.5), dt)
    tone = saw * _F(0.55)
    tone += square * _F(0.3)
    sos = signal.butter(4, 380.0, "low", fs=sr, output="sos").astype(_F)
    tone = signal.sosfilt(sos, tone)
    t *= _F(2.0 * np.pi)
    tone += np.sin(t, out=t) * _F(0.55)
    tone *= _envelope(clock, gate_s, attack=0.004, decay=0.45, release=0.03, ramp=0.004)
    tone *= (vel * 1.6).astype(_F)[clock.note]
    return np.tanh(tone, out=tone) * _F(0.55)


def _render_pad(n: int, sr: int, plan: _Plan) -> tuple[np.ndarray, np.ndarray]:
    """Four-voice seventh chords, three detuned saws per voice spread across the stereo field."""
    bars = np.arange(plan.n_bars)
    roots = np.array([plan.chord(int(b)) for b in bars])
    times = bars * plan.bar_s
    onsets, (vel, roots) = _prepare_notes(n, sr, times, np.ones(len(times)), roots)
    clock = _note_clock(n, sr, onsets)
    env = _envelope(clock, np.full(len(onsets), 1e9), attack=0.35, decay=None, release=1.0, ramp=0.06)
    env *= vel.astype(_F)[clock.note]
    # Slow swell of the attack is shaped as 1 - e^-x rather than linear: softer, more "pad".
    env *= _F(-3.0)
    env = _F(1.0) - np.exp(env, out=env)

    detune = 2.0 ** (np.array([-7.0, 0.0, 7.0]) / 1200.0)  # cents
    left = np.zeros(n, dtype=_F)
    right = np.zeros(n, dtype=_F)
    for k in (0, 2, 4, 6):  # chord tones above the root
        hz = _midi_to_hz(_fold(plan.tonic + _degree_to_semitone(roots + k), _PAD_LO))
        cycles = np.cumsum((hz / sr)[clock.note])
        dt = (hz / sr).astype(_F)[clock.note]
        # Each detuned copy starts at its own phase; identical phases would cancel the chorus
        # effect for the first seconds.
        lo, mid, hi = (_saw(_wrap(cycles, r, k * 0.1 + j * 0.33), dt * _F(r)) for j, r in enumerate(detune))
        mid *= _F(0.6)
        left += lo
        left += mid
        right += hi
        right += mid
    sos = signal.butter(2, 1600.0, "low", fs=sr, output="sos").astype(_F)
    env *= _F(0.11)
    return signal.sosfilt(sos, left) * env, signal.sosfilt(sos, right) * env


def _render_lead(n: int, sr: int, plan: _Plan, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two-operator FM pluck (electric-piano-like) with a ping-pong dotted-eighth echo."""
    times, vel, midi, gate = _melody(rng, plan)
    if len(times) == 0:
        return np.zeros(n, dtype=_F), np.zeros(n, dtype=_F)
    onsets, (vel, freq, gate) = _prepare_notes(n, sr, times, vel, _midi_to_hz(midi), gate)
    clock = _note_clock(n, sr, onsets)
    phase = _wrap(np.cumsum(freq[clock.note] / sr))
    phase *= _F(2.0 * np.pi)
    # Modulation index decays fast: bright "tine" attack that mellows into a near-sine.
    index = np.exp(clock.t * _F(-1.0 / 0.09))
    index *= _F(2.4)
    index += _F(0.35)
    index *= np.sin(phase)
    index += phase
    dry = np.sin(index, out=index)
    dry *= _envelope(clock, gate, attack=0.002, decay=0.55, release=0.06, ramp=0.004)
    dry *= (vel * 0.5).astype(_F)[clock.note]
    left, right = _pan(dry, _PAN["lead"])
    d = int(round(plan.step_s * 3 * sr))  # dotted eighth
    return left + 0.28 * _delay(dry, 2 * d), right + 0.32 * _delay(dry, d) + 0.12 * _delay(dry, 3 * d)


def _one_shots(sr: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Pre-render every drum sound once; tracks reuse them like a sample pack."""

    def t_axis(seconds: float) -> np.ndarray:
        return np.arange(int(seconds * sr)) / sr

    # Kick: sine swept down from ~155 Hz to 45 Hz, plus a 2 ms click for definition.
    t = t_axis(0.4)
    f = 45.0 + 110.0 * np.exp(-t / 0.035)
    kick = np.sin(2.0 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.2) * np.minimum(t / 0.001, 1.0)
    kick[: int(0.002 * sr)] += rng.uniform(-0.3, 0.3, int(0.002 * sr))

    # Snare: band-passed noise burst over a short 185 Hz body.
    t = t_axis(0.25)
    nyq = sr / 2.0
    bp = signal.butter(2, [1200.0, min(6000.0, 0.45 * sr)], "band", fs=sr, output="sos")
    noise = signal.sosfilt(bp, rng.standard_normal(len(t)))
    snare = 1.4 * noise * np.exp(-t / 0.08) + 0.5 * np.sin(2.0 * np.pi * 185.0 * t) * np.exp(-t / 0.05)

    # Hats: high-passed noise; the closed one is very short, the open one rings.
    hp = signal.butter(4, min(7000.0, 0.8 * nyq), "high", fs=sr, output="sos")
    t = t_axis(0.08)
    hat = signal.sosfilt(hp, rng.standard_normal(len(t))) * np.exp(-t / 0.016)
    t = t_axis(0.35)
    open_hat = signal.sosfilt(hp, rng.standard_normal(len(t))) * np.exp(-t / 0.11)

    # Side-chain envelope: how much the kick pushes the bass and pad down ("pumping").
    t = t_axis(0.3)
    duck = np.exp(-t / 0.09)
    return {"kick": kick, "snare": snare, "hat": hat, "open_hat": open_hat, "duck": duck}


def _render_drums(
    n: int, sr: int, plan: _Plan, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (left, right, duck) where duck in [0, 1] is the kick's side-chain envelope."""
    shots = _one_shots(sr, rng)
    all_bars = np.arange(plan.n_bars)
    groove_bars = all_bars[all_bars >= plan.intro_bars]

    def hits(bars: np.ndarray, steps: np.ndarray, vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        times = _step_time(bars, steps, plan.step_s)
        # Humanise: a couple of milliseconds of timing drift and +-8 % velocity.
        times = times + rng.normal(0.0, 0.002, len(times))
        vel = vel * rng.uniform(0.92, 1.0, len(times))
        return np.maximum(np.rint(times * sr).astype(np.int64), 0), vel

    kick_bar, kick_step = [], []
    snare_bar, snare_step, snare_vel = [], [], []
    for bar in groove_bars:  # per bar, not per sample
        steps = _KICK_STEPS_TURN if bar % 4 == 3 else _KICK_STEPS
        kick_bar += [bar] * len(steps)
        kick_step += list(steps)
        fill = _SNARE_FILL if bar % 8 == 7 else tuple((s, 1.0) for s in _SNARE_STEPS)
        snare_bar += [bar] * len(fill)
        snare_step += [s for s, _ in fill]
        snare_vel += [v for _, v in fill]
    k_on, k_vel = hits(np.array(kick_bar), np.array(kick_step), np.ones(len(kick_bar)))
    s_on, s_vel = hits(np.array(snare_bar), np.array(snare_step), np.array(snare_vel))

    hat_steps = np.flatnonzero(_HAT_VEL > 0)
    h_bar = np.repeat(all_bars, len(hat_steps))
    h_step = np.tile(hat_steps, len(all_bars))
    h_vel = np.tile(_HAT_VEL[hat_steps], len(all_bars))
    # The closed hat is choked by the open one on the same step.
    open_mask = (h_bar % 2 == 1) & (h_step == _OPEN_HAT_STEP)
    h_on, h_vel = hits(h_bar[~open_mask], h_step[~open_mask], h_vel[~open_mask])
    o_on, o_vel = hits(h_bar[open_mask], h_step[open_mask], np.full(int(open_mask.sum()), 0.8))

    left = np.zeros(n, dtype=_F)
    right = np.zeros(n, dtype=_F)
    for name, on, vel, gain in (
        ("kick", k_on, k_vel, 0.95),
        ("snare", s_on, s_vel, 0.5),
        ("hat", h_on, h_vel, 0.22),
        ("open_hat", o_on, o_vel, 0.16),
    ):
        mono = _place(n, on, vel * gain, shots[name])
        lo, hi = _pan(mono, _PAN[name])
        left += lo
        right += hi
    duck = np.minimum(_place(n, k_on, k_vel, shots["duck"]), _F(1.0))
    duck *= _F(-0.45)
    duck += _F(1.0)
    return left, right, duck


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _fade(n: int, sr: int) -> np.ndarray:
    """Raised-cosine fade-in and fade-out gain curve, each at most a quarter of the track."""
    gain = np.ones(n, dtype=_F)
    n_in = min(int(_FADE_IN_S * sr), n // 4)
    n_out = min(int(_FADE_OUT_S * sr), n // 4)
    if n_in > 0:
        gain[:n_in] = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_in) / n_in)
    if n_out > 0:
        gain[n - n_out :] *= 0.5 + 0.5 * np.cos(np.pi * (np.arange(n_out) + 1) / n_out)
    return gain


def synth_track(duration_s: float, sample_rate: int = 32000, seed: int = 0, channels: int = 2) -> np.ndarray:
    """Synthesise one demo track in the catalogue's fixed style.

    Bass, chord pad, FM lead and drums on a swung 96-112 BPM groove in Dorian mode. The key,
    tempo, progressions and melody come from ``numpy.random.default_rng(seed)``, so equal
    arguments give bit-for-bit equal audio and different seeds give different tracks.

    Args:
        duration_s: Length of the track in seconds (> 0).
        sample_rate: Sample rate in Hz (>= 8000).
        seed: Non-negative integer selecting the track.
        channels: 2 for stereo, 1 for a mono down-mix.

    Returns:
        float32 array of shape ``[samples, channels]`` with
        ``samples == round(duration_s * sample_rate)``, peak-normalised to 0.9.

    Raises:
        ValueError: If an argument is out of range.
    """
    if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"duration_s must be a finite number > 0, got {duration_s!r}")
    if int(sample_rate) != sample_rate or sample_rate < _MIN_SAMPLE_RATE:
        raise ValueError(f"sample_rate must be an integer >= {_MIN_SAMPLE_RATE} Hz, got {sample_rate!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if channels not in (1, 2):
        raise ValueError(f"channels must be 1 (mono) or 2 (stereo), got {channels!r}")
    sr = int(sample_rate)
    n = int(round(duration_s * sr))
    if n < 1:
        raise ValueError(f"duration_s={duration_s!r} is shorter than one sample at {sr} Hz")

    rng = np.random.default_rng(int(seed))
    plan = _plan(rng, duration_s)
    # Independent streams per part: adding a random draw to one instrument must not reshuffle
    # the others.
    rng_bass, rng_lead, rng_drums = rng.spawn(3)

    drums_l, drums_r, duck = _render_drums(n, sr, plan, rng_drums)
    bass = _render_bass(n, sr, plan, rng_bass) * duck
    pad_l, pad_r = _render_pad(n, sr, plan)
    lead_l, lead_r = _render_lead(n, sr, plan, rng_lead)
    bass_l, bass_r = _pan(bass, _PAN["bass"])

    mix = np.empty((n, 2), dtype=_F)
    for c, parts in enumerate(((drums_l, bass_l, lead_l), (drums_r, bass_r, lead_r))):
        mix[:, c] = parts[0] + parts[1] + parts[2]
    mix[:, 0] += pad_l * duck
    mix[:, 1] += pad_r * duck
    if channels == 1:
        mix = mix.mean(axis=1, keepdims=True, dtype=_F)
    # Gentle bus saturation glues the parts together; normalise first so its amount does not
    # depend on how loud a particular seed happens to sum.
    peak = float(np.max(np.abs(mix)))
    if peak > 0:
        mix *= _F(1.3 / peak)
        np.tanh(mix, out=mix)
    mix *= _fade(n, sr)[:, None]
    peak = float(np.max(np.abs(mix)))
    if peak > 0:
        mix *= _F(_PEAK / peak)
    return mix
