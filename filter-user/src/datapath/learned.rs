//! Addresses learned for devices declared by MAC alone (`crate::learning`),
//! bound into the running generation at once: one entry of `V4_INDEX` or
//! `DEVICES`, the same an apply writes for a declared address. Each later
//! apply compiles them in with the device's other addresses.

use std::{net::IpAddr, os::fd::AsFd as _};

use filter_common::{DeviceKey, V4_INDEX_ENTRIES, meta, v4net};

use super::Filter;
use crate::{addr, error::LoadError, sys::bpf};

impl Filter {
    /// Binds `ip` to the device on `line` of the running generation (its
    /// index in the policy that was applied).
    pub fn bind_learned(&mut self, line: u32, ip: IpAddr) -> Result<(), LoadError> {
        self.set_learned(ip, Some(line))
    }

    /// Unbinds `ip` from the running generation.
    pub fn unbind_learned(&mut self, ip: IpAddr) -> Result<(), LoadError> {
        self.set_learned(ip, None)
    }

    fn set_learned(&mut self, ip: IpAddr, line: Option<u32>) -> Result<(), LoadError> {
        let generation = self.active_generation()?;
        let key = addr::key(ip);
        match self.v4_index_of(generation, key)? {
            Some(index) => {
                let value = line.map_or(0, |l| l + 1);
                bpf::update_batch(self.maps.v4_index.fd().as_fd(), &[index], &[value])?;
            }
            None => {
                let k = DeviceKey { generation, addr: key };
                match line {
                    Some(l) => self.maps.devices.insert(k, l, 0)?,
                    // Already gone is what was asked for.
                    None => {
                        let _ = self.maps.devices.remove(&k);
                    }
                }
            }
        }
        let g = generation as usize;
        let written = &mut self.generations.addrs_written[g];
        *written = if line.is_some() { *written + 1 } else { written.saturating_sub(1) };
        self.maps.meta.set(meta::DEVICE_ADDRS + generation, u64::from(*written), 0)?;
        Ok(())
    }

    /// Where `key` sits in the generation's direct index (as
    /// `write_addresses` placed declared addresses), if its subnet is
    /// indexed.
    fn v4_index_of(&self, generation: u32, key: [u8; 16]) -> Result<Option<u32>, LoadError> {
        let Some(a) = addr::key_v4(key).map(u32::from) else { return Ok(None) };
        let config = self.maps.config.get(&generation, 0)?;
        Ok(config
            .v4_nets
            .iter()
            .take(config.v4_count as usize)
            .find(|n| n.flags & v4net::INDEXED != 0 && a & n.mask == n.net)
            .map(|n| generation * V4_INDEX_ENTRIES + n.base + (a & !n.mask)))
    }
}
