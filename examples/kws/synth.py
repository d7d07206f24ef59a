"""A small keyword-spotting set made on this machine: espeak-ng speaks each word in several voices,
speeds and pitches, sox resamples it to 16 kHz and makes the background noise; clips are shifted in
time and mixed with noise at a random signal-to-noise ratio. Two extra classes, as in the Speech
Commands benchmark: ``_silence_`` (noise only) and ``_unknown_`` (other words)."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

KEYWORDS = ["yes", "no", "up", "down", "left", "right", "on", "off"]
UNKNOWN_WORDS = ["cat", "dog", "bird", "tree", "house", "zero", "wow", "bed", "marvin", "happy"]
CLASSES = KEYWORDS + ["_silence_", "_unknown_"]
VOICES = ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029"]
VARIANTS = ["m1", "m3", "f2", "f4"]
SPEEDS = [130, 160, 190]  # words per minute
NOISES = ["whitenoise", "pinknoise", "brownnoise"]
SAMPLE_RATE = 16000


def check_tools() -> None:
    missing = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"error: {' and '.join(missing)} not found; install with: "
                         f"apt-get install -y -q espeak-ng sox")


def speak(word: str, voice: str, speed: int, pitch: int, path: Path) -> np.ndarray:
    """espeak-ng -> sox (16 kHz mono 16-bit) -> float32 samples in [-1, 1]."""
    import soundfile

    espeak = subprocess.Popen(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                              stdout=subprocess.PIPE)
    subprocess.run(["sox", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(path)],
                   stdin=espeak.stdout, check=True)
    espeak.stdout.close()
    espeak.wait()
    audio, _ = soundfile.read(path, dtype="float32")
    return audio


def noise_bank(tmp: Path, seconds: int = 20) -> list[np.ndarray]:
    """Background noise made by sox (white, pink, brown)."""
    import soundfile

    bank = []
    for kind in NOISES:
        path = tmp / f"{kind}.wav"
        subprocess.run(["sox", "-n", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(path),
                        "synth", str(seconds), kind], check=True)
        bank.append(soundfile.read(path, dtype="float32")[0])
    return bank


def _place(audio: np.ndarray, rng) -> np.ndarray:
    """Trim espeak's leading/trailing silence and place the word at a random offset in 1 s."""
    loud = np.flatnonzero(np.abs(audio) > 0.02)
    if len(loud):
        audio = audio[loud[0]:loud[-1] + 1]
    audio = audio[:SAMPLE_RATE]
    clip = np.zeros(SAMPLE_RATE, np.float32)
    start = rng.integers(0, SAMPLE_RATE - len(audio) + 1)
    clip[start:start + len(audio)] = audio * rng.uniform(0.5, 1.0) / (np.abs(audio).max() + 1e-6)
    return clip


def _noise(bank, rng, level: float) -> np.ndarray:
    src = bank[rng.integers(len(bank))]
    start = rng.integers(0, len(src) - SAMPLE_RATE)
    seg = src[start:start + SAMPLE_RATE]
    return seg / (np.abs(seg).max() + 1e-6) * level


def synthesize(small: bool, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Audio clips (N, 16000) float32 and labels (N,) indexing CLASSES; plus a description."""
    check_tools()
    rng = np.random.default_rng(seed)
    voices = VOICES[:3] if small else VOICES
    variants = VARIANTS[:2] if small else VARIANTS
    speeds = SPEEDS[::2] if small else SPEEDS
    copies = 3 if small else 2  # noisy copies of each utterance
    clips, labels = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bank = noise_bank(tmp)
        combos = [(f"{v}+{var}", s) for v in voices for var in variants for s in speeds]
        for label, word in enumerate(KEYWORDS):
            for voice, speed in combos:
                audio = speak(word, voice, speed, int(rng.integers(30, 80)), tmp / "w.wav")
                for _ in range(copies):
                    clips.append(_place(audio, rng) + _noise(bank, rng, rng.uniform(0.0, 0.08)))
                    labels.append(label)
        per_class = len(combos) * copies
        unknown = [(w, *combos[rng.integers(len(combos))]) for w in UNKNOWN_WORDS
                   for _ in range(max(1, per_class // len(UNKNOWN_WORDS) // copies))]
        for word, voice, speed in unknown:
            audio = speak(word, voice, speed, int(rng.integers(30, 80)), tmp / "w.wav")
            for _ in range(copies):
                clips.append(_place(audio, rng) + _noise(bank, rng, rng.uniform(0.0, 0.08)))
                labels.append(CLASSES.index("_unknown_"))
        for _ in range(per_class):
            clips.append(_noise(bank, rng, rng.uniform(0.0, 0.1)))
            labels.append(CLASSES.index("_silence_"))
    info = {"voices": [f"{v}+{var}" for v in voices for var in variants], "speeds_wpm": speeds,
            "pitch": "uniform 30..79 (espeak-ng -p)", "noise": NOISES, "clips": len(clips)}
    return np.stack(clips).astype(np.float32), np.asarray(labels, np.int64), info
