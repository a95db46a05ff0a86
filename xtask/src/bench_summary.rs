//! Summary of several benchmark processes: this machine's speed varies by
//! process (about half run 1.5–1.9× slower), so each case is reported as
//! the median over processes, the median of the fast cluster (processes
//! within 1.3× of the fastest), and min and max.

use std::{collections::BTreeMap, fmt::Write as _, path::PathBuf};

use anyhow::{Context as _, Result};

/// A process's result for one case.
struct Case {
    ns: u64,
    floor: u64,
    /// xdp-filter's time and verdict on the same frame, in the same process.
    xdp_filter: Option<(u64, String)>,
}

/// (devices, frame) -> that case.
type Run = BTreeMap<(u64, String), Case>;

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
        // tail: "", bytes, median, min, max, floor, ratio, xdp-filter ns, its verdict
        let xdp_filter = match (num(7), tail.get(8)) {
            (Ok(ns), Some(verdict)) => Some((ns, verdict.to_string())),
            _ => None,
        };
        let key = (devices, frame);
        run.insert(key.clone(), Case { ns: num(2)?, floor: num(5)?, xdp_filter });
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
         The last columns compare with xdp-filter on the same frame: its median, its verdict, and \
         the median over processes of vlanguard / xdp-filter measured in the same process.\n\n\
         | devices | frame | median | fast-cluster median | min | max | XDP_PASS floor | xdp-filter | its verdict | vlanguard / xdp-filter |\n\
         |---:|---|---:|---:|---:|---:|---:|---:|---|---:|\n",
        all.len()
    );
    let mut csv = String::from(
        "devices,frame,median,fast_median,min,max,floor,xdp_filter_median,xdp_filter_verdict,ratio_to_xdp_filter\n",
    );
    for key in order {
        let cases: Vec<&Case> = all.iter().filter_map(|r| r.get(&key)).collect();
        let values: Vec<u64> = cases.iter().map(|c| c.ns).collect();
        let floors: Vec<u64> = cases.iter().map(|c| c.floor).collect();
        let theirs: Vec<(u64, f64, &str)> = cases
            .iter()
            .filter_map(|c| {
                let (x, verdict) = c.xdp_filter.as_ref()?;
                Some((*x, c.ns as f64 / (*x).max(1) as f64, verdict.as_str()))
            })
            .collect();
        let (x, verdict, ratio) = match theirs.first() {
            Some((_, _, verdict)) => {
                let mut ratios: Vec<f64> = theirs.iter().map(|t| t.1).collect();
                ratios.sort_by(f64::total_cmp);
                let x = median(theirs.iter().map(|t| t.0).collect());
                (x.to_string(), verdict.to_string(), format!("{:.2}", ratios[ratios.len() / 2]))
            }
            None => Default::default(),
        };
        if values.is_empty() {
            continue;
        }
        let min = *values.iter().min().expect("non-empty");
        let max = *values.iter().max().expect("non-empty");
        let fast: Vec<u64> = values.iter().copied().filter(|v| *v * 10 <= min * 13).collect();
        let (m, fm, floor) = (median(values), median(fast), median(floors));
        let _ = writeln!(
            md,
            "| {} | {} | {m} | {fm} | {min} | {max} | {floor} | {x} | {verdict} | {ratio} |",
            key.0, key.1
        );
        let _ = writeln!(
            csv,
            "{},\"{}\",{m},{fm},{min},{max},{floor},{x},{verdict},{ratio}",
            key.0, key.1
        );
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
        let head = "devices,rules_per_device,frame,bytes,ns_median,ns_min,ns_max,floor_ns_median,ratio,xdpf,xdpf_verdict\n";
        let mut runs = Vec::new();
        for (k, ns) in [180u64, 100, 185].iter().enumerate() {
            let p = dir.join(format!("run-{k}.csv"));
            std::fs::write(
                &p,
                format!("{head}1,10,\"dropped, TCP v4\",60,{ns},{ns},{ns},6,1.0,{},pass\n", ns / 5),
            )
            .expect("write");
            runs.push(p);
        }
        let (md, csv) = summarise(&runs).expect("summary");
        // A fast process among two slow ones: the median is a slow one's,
        // the fast cluster's median is the fast one's.
        // xdp-filter took a fifth of each process's time: the ratio is 5
        // whatever the process's speed.
        assert!(csv.contains("1,\"dropped, TCP v4\",180,100,100,185,6,36,pass,5.00"), "{csv}");
        assert!(
            md.contains("| 1 | dropped, TCP v4 | 180 | 100 | 100 | 185 | 6 | 36 | pass | 5.00 |"),
            "{md}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
