//! Small `key=value` files (`volume.conf`, the CSI plugin's volume records): a comment
//! line, then one key a line; written whole to a temporary name and renamed, so that a
//! reader (or a process killed mid-write) sees the old file or the new one.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

pub type Map = BTreeMap<String, String>;

/// Reads a file; `Ok(None)` if there is none, `InvalidData` if a line is not `key=value`.
pub fn read(path: &Path) -> io::Result<Option<Map>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let malformed = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is malformed", path.display()),
        )
    };
    let mut map = Map::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (k, v) = line.split_once('=').ok_or_else(malformed)?;
        if map.insert(k.to_string(), v.to_string()).is_some() {
            return Err(malformed());
        }
    }
    Ok(Some(map))
}

/// Writes `map` atomically, under a `# comment` line. Keys and values must not hold a
/// newline (nor a key `=`): they could not be read back as they were.
pub fn write(path: &Path, comment: &str, map: &Map) -> io::Result<()> {
    let mut text = format!("# {comment}\n");
    for (k, v) in map {
        if k.contains(['=', '\n']) || v.contains('\n') || k.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot write {k:?}={v:?} to {}", path.display()),
            ));
        }
        text += &format!("{k}={v}\n");
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_it_cannot_read_back() {
        let dir = std::env::temp_dir().join(format!("emptydirfs-kv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.conf");
        assert_eq!(read(&p).unwrap(), None);
        let mut m = Map::new();
        m.insert("a".into(), "x=y z".into());
        m.insert("b".into(), String::new());
        write(&p, "test", &m).unwrap();
        assert_eq!(read(&p).unwrap(), Some(m.clone()));
        m.insert("c".into(), "two\nlines".into());
        assert!(write(&p, "test", &m).is_err());
        std::fs::write(&p, "a=1\na=2\n").unwrap();
        assert_eq!(read(&p).unwrap_err().kind(), io::ErrorKind::InvalidData);
        std::fs::write(&p, "no equals\n").unwrap();
        assert!(read(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
