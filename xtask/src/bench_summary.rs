//! Summary of several benchmark processes: this machine's speed varies by
//! process (about half run 1.5–1.9× slower), so each case is reported as
//! the median over processes, the median of the fast cluster (processes
//! within 1.3× of the fastest), and min and max.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use anyhow::{Context as _, Result};

/// A process's result for one case: (devices, frame) -> (ns, floor ns).
type Run = BTreeMap<(u64, String), (u64, u64)>;

fn read(path: &PathBuf) -> Result<(Run, Vec<(u64, String)>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let (mut run, mut order) = (Run::new(), Vec::new());
    for line in text.lines().skip(1) {
        // devices,rules,"frame",bytes,median,min,max,floor,ratio
        let mut quoted = line.splitn(3, '"');
        let head = quoted.next().unwrap_or_default();
        let frame = quoted.next().context("frame name")?.to_string();
        let tail: Vec<&str> = quoted.next().unwrap_or_default().split(',').collect();
        let devices: u64 = head.split(',').next().unwrap_or_default().parse()?;
        let num = |i: usize| -> Result<u64> {
            tail.get(i).context("column")?.parse().with_context(|| format!("in {line:?}"))
        };
        // tail: "", bytes, median, min, max, floor, ratio
        let key = (devices, frame);
        run.insert(key.clone(), (num(2)?, num(5)?));
        order.push(key);
    }
    Ok((run, order))
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

/// The summary table (markdown) and CSV of the per-process CSVs `runs`.
pub fn summarise(runs: &[PathBuf]) -> Result<(String, String)> {
    let mut all = Vec::new();
    let mut order = Vec::new();
    for path in runs {
        let (run, o) = read(path)?;
        if order.is_empty() {
            order = o;
        }
        all.push(run);
    }
    let mut md = format!(
        "ns per frame over {} processes (each the median of 7 rounds of TestRun)\n\n\
         | devices | frame | median | fast-cluster median | min | max | XDP_PASS floor |\n\
         |---:|---|---:|---:|---:|---:|---:|\n",
        all.len()
    );
    let mut csv = String::from("devices,frame,median,fast_median,min,max,floor\n");
    for key in order {
        let values: Vec<u64> = all.iter().filter_map(|r| r.get(&key).map(|v| v.0)).collect();
        let floors: Vec<u64> = all.iter().filter_map(|r| r.get(&key).map(|v| v.1)).collect();
        if values.is_empty() {
            continue;
        }
        let min = *values.iter().min().expect("non-empty");
        let max = *values.iter().max().expect("non-empty");
        let fast: Vec<u64> = values.iter().copied().filter(|v| *v * 10 <= min * 13).collect();
        let (m, fm, floor) = (median(values), median(fast), median(floors));
        let _ = writeln!(md, "| {} | {} | {m} | {fm} | {min} | {max} | {floor} |", key.0, key.1);
        let _ = writeln!(csv, "{},\"{}\",{m},{fm},{min},{max},{floor}", key.0, key.1);
    }
    Ok((md, csv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_medians_and_the_fast_cluster() {
        let dir = std::env::temp_dir().join(format!("vlanguard-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let head =
            "devices,rules_per_device,frame,bytes,ns_median,ns_min,ns_max,floor_ns_median,ratio\n";
        let mut runs = Vec::new();
        for (k, ns) in [180u64, 100, 185].iter().enumerate() {
            let p = dir.join(format!("run-{k}.csv"));
            std::fs::write(&p, format!("{head}1,10,\"dropped, TCP v4\",60,{ns},{ns},{ns},6,1.0\n"))
                .expect("write");
            runs.push(p);
        }
        let (md, csv) = summarise(&runs).expect("summary");
        // A fast process among two slow ones: the median is a slow one's,
        // the fast cluster's median is the fast one's.
        assert!(csv.contains("1,\"dropped, TCP v4\",180,100,100,185,6"), "{csv}");
        assert!(md.contains("| 1 | dropped, TCP v4 | 180 | 100 | 100 | 185 | 6 |"), "{md}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
