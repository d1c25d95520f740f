//! Fuzzing for fintx on the stable toolchain: a mutational engine over a per-target
//! corpus, and one target per parser that sees outside bytes.
//!
//! Each target takes raw bytes; those that need several fields split them with
//! `arbitrary::Unstructured`, so every field is driven by the same mutated input. A target
//! reports a broken property by panicking; the engine catches the panic, keeps the input
//! under `fuzz/crashes/<target>/` and counts it. Without a nightly toolchain there is no
//! coverage feedback: inputs are stacked mutations of the corpus and of a dictionary of
//! each format's tokens, which is what reaches the parsers' branches here.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod targets;

/// One fuzz target: its name, seed inputs and format tokens, and the property run on
/// each input.
pub trait Target {
    fn name(&self) -> &'static str;
    /// Inputs that reach deep into the parser (valid documents, signed requests).
    fn seeds(&self) -> Vec<Vec<u8>>;
    /// Tokens of the input format that mutations insert.
    fn dictionary(&self) -> &'static [&'static [u8]];
    /// Largest input worth trying.
    fn max_len(&self) -> usize {
        4096
    }
    /// Runs the parser on `input` and panics when a property fails.
    fn run(&mut self, input: &[u8]);
}

/// A small, fast, seedable generator (xorshift64*): reproducible runs, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

const INTERESTING: &[u8] = b"\x00\xff\x7f\x80 \"\\{}[],:.-+eE0129aAzZ_=&%\n\t";

/// Applies one to eight random mutations to `input`.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&[u8]], max_len: usize) {
    let rounds = 1 + rng.below(8);
    for _ in 0..rounds {
        let len = input.len();
        match rng.below(12) {
            0 if len > 0 => {
                let at = rng.below(len);
                input[at] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let at = rng.below(len);
                input[at] = rng.next_u64() as u8;
            }
            2 if len > 0 => {
                let at = rng.below(len);
                input[at] = INTERESTING[rng.below(INTERESTING.len())];
            }
            3 => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..count).map(|_| rng.next_u64() as u8).collect();
                input.splice(at..at, bytes);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let count = 1 + rng.below((len - at).min(32));
                input.drain(at..at + count);
            }
            5 if len > 0 => {
                let from = rng.below(len);
                let count = 1 + rng.below((len - from).min(64));
                let piece = input[from..from + count].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, piece);
            }
            6 | 7 if !dictionary.is_empty() => {
                let token = dictionary[rng.below(dictionary.len())];
                let at = rng.below(len + 1);
                if rng.below(2) == 0 || at == len {
                    input.splice(at..at, token.iter().copied());
                } else {
                    let end = (at + token.len()).min(len);
                    input.splice(at..end, token.iter().copied());
                }
            }
            8 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let to = from + rng.below(other.len() - from) + 1;
                    let at = rng.below(len + 1);
                    let end = if rng.below(2) == 0 { at } else { len };
                    input.splice(at..end, other[from..to].iter().copied());
                }
            }
            9 => {
                let at = rng.below(len + 1);
                let digits = 1 + rng.below(40);
                let run: Vec<u8> = (0..digits).map(|_| b'0' + rng.below(10) as u8).collect();
                input.splice(at..at, run);
            }
            10 if len > 0 => input.truncate(rng.below(len)),
            _ if len > 0 => {
                let at = rng.below(len);
                let digit = rng.below(10) as u8;
                input[at] = b'0' + digit;
            }
            _ => input.push(rng.next_u64() as u8),
        }
    }
    input.truncate(max_len);
}

/// What one target's run did.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub target: &'static str,
    pub executions: u64,
    pub crashes: u64,
    pub elapsed: Duration,
    pub first_crash: Option<String>,
}

/// The bounds of one target's run: whichever is reached first ends it.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub duration: Duration,
    pub executions: u64,
    /// Stop at the first crash instead of counting on.
    pub stop_on_crash: bool,
}

/// The corpus of a target: its built-in seeds and the inputs kept in `dir`.
pub fn load_corpus(target: &dyn Target, dir: Option<&Path>) -> Vec<Vec<u8>> {
    let mut corpus = target.seeds();
    if let Some(dir) = dir {
        if let Ok(entries) = std::fs::read_dir(dir.join(target.name())) {
            let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for path in paths.into_iter().take(1000) {
                if let Ok(bytes) = std::fs::read(&path) {
                    corpus.push(bytes);
                }
            }
        }
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    corpus
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// Runs `make` a target: every corpus entry once, then mutants until the budget ends.
/// A target that panicked is rebuilt (its in-memory state may be poisoned).
pub fn fuzz(
    make: &dyn Fn() -> Box<dyn Target>,
    corpus_dir: Option<&Path>,
    crash_dir: Option<&Path>,
    budget: Budget,
    seed: u64,
) -> Report {
    let mut target = make();
    let name = target.name();
    let corpus = load_corpus(target.as_ref(), corpus_dir);
    let dictionary = target.dictionary();
    let max_len = target.max_len();
    let mut rng = Rng::new(
        seed ^ name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
    );
    let mut report = Report {
        target: name,
        ..Report::default()
    };
    let started = Instant::now();
    let mut input = Vec::with_capacity(max_len);
    while report.executions < budget.executions {
        // The clock is read once every 64 executions: cheap targets run in well under a
        // microsecond and a clock read would be a measurable share of that.
        if report.executions % 64 == 0 && started.elapsed() >= budget.duration {
            break;
        }
        input.clear();
        let index = report.executions as usize;
        if index < corpus.len() {
            input.extend_from_slice(&corpus[index]);
        } else {
            input.extend_from_slice(&corpus[rng.below(corpus.len())]);
            mutate(&mut rng, &mut input, &corpus, dictionary, max_len);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| target.run(&input)));
        report.executions += 1;
        if let Err(payload) = outcome {
            report.crashes += 1;
            let message = panic_message(payload.as_ref());
            if let Some(dir) = crash_dir {
                let dir = dir.join(name);
                let digest = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
                });
                if std::fs::create_dir_all(&dir).is_ok() {
                    let path = dir.join(format!("crash-{digest:016x}"));
                    let _ = std::fs::write(&path, &input);
                    eprintln!("{name}: crash kept at {}: {message}", path.display());
                }
            } else {
                eprintln!("{name}: crash on {:?}: {message}", String::from_utf8_lossy(&input));
            }
            report.first_crash.get_or_insert(message);
            if budget.stop_on_crash {
                break;
            }
            target = make();
        }
    }
    report.elapsed = started.elapsed();
    report
}

/// Replaces the panic hook with a silent one while fuzzing: a caught panic is reported
/// once by the engine, not printed with a backtrace per input.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}
