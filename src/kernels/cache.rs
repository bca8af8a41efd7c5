//! Cache sizes, detected once (Linux sysfs), falling back to 32 KiB L1d / 1 MiB L2 / 32 MiB L3.
//! They set the M and N blocking only, which never changes the bits.

use std::sync::OnceLock;

/// A hint to bring the line at `p` into the caches; `p` need not be valid.
#[cfg_attr(sinter_inline, inline(always))]
pub(crate) fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address; SSE is part of x86_64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Per-core data cache sizes in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caches {
    /// L1 data cache.
    pub l1d: usize,
    /// L2 (per core).
    pub l2: usize,
    /// L3 (shared).
    pub l3: usize,
}

impl Caches {
    /// The fallback when detection fails: 32 KiB / 1 MiB / 32 MiB.
    pub const FALLBACK: Caches = Caches {
        l1d: 32 << 10,
        l2: 1 << 20,
        l3: 32 << 20,
    };

    /// This machine's caches, detected once (with the core type the blocking depends on).
    pub fn get() -> Caches {
        static C: OnceLock<Caches> = OnceLock::new();
        *C.get_or_init(|| {
            two_fma512_ports();
            detect().unwrap_or(Caches::FALLBACK)
        })
    }
}

/// Whether this is an Intel server core with two 512-bit FMA ports (Skylake-SP to Granite
/// Rapids: family 6, models 85, 106, 108, 143, 173, 207; and 167, as a hypervisor reports a
/// Xeon with AMX and AVX512-FP16, whose 243 GFLOP/s FMA peak takes two ports: there the
/// L1-resident panel ran a 256 x 1024 x 4096 network (`builtin:ffn`, batch 256) in 0.71x
/// the time of 1024-deep blocks), where AVX-512 doubles the FMA peak and the weight panel
/// should stay in L1. Detected once, from CPUID.
pub(crate) fn two_fma512_ports() -> bool {
    static C: OnceLock<bool> = OnceLock::new();
    *C.get_or_init(|| {
        // Miri cannot run CPUID; it runs the portable tier only.
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            use std::arch::x86_64::__cpuid;
            // CPUID exists on every x86-64 CPU.
            let vendor = __cpuid(0);
            let intel =
                (vendor.ebx, vendor.edx, vendor.ecx) == (0x756e_6547, 0x4965_6e69, 0x6c65_746e);
            let sig = __cpuid(1).eax;
            let family = (sig >> 8) & 0xf;
            let model = ((sig >> 4) & 0xf) | ((sig >> 12) & 0xf0);
            intel
                && family == 6
                && matches!(model, 85 | 106 | 108 | 143 | 167 | 173 | 207)
                && std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(any(not(target_arch = "x86_64"), miri))]
        false
    })
}

fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mult) = match s.strip_suffix('K') {
        Some(n) => (n, 1 << 10),
        None => match s.strip_suffix('M') {
            Some(n) => (n, 1 << 20),
            None => (s, 1),
        },
    };
    num.parse::<usize>()
        .ok()
        .map(|n| n * mult)
        .filter(|&n| n > 0)
}

fn detect() -> Option<Caches> {
    let mut c = Caches::FALLBACK;
    let mut found = false;
    for i in 0..8 {
        let dir = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).ok();
        let (Some(level), Some(kind), Some(size)) = (read("level"), read("type"), read("size"))
        else {
            continue;
        };
        let Some(size) = parse_size(&size) else {
            continue;
        };
        match (level.trim(), kind.trim()) {
            ("1", "Data") => c.l1d = size,
            ("2", _) => c.l2 = size,
            ("3", _) => c.l3 = size,
            _ => continue,
        }
        found = true;
    }
    found.then_some(c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_parse() {
        assert_eq!(super::parse_size("32K\n"), Some(32 << 10));
        assert_eq!(super::parse_size("32M"), Some(32 << 20));
        assert_eq!(super::parse_size("x"), None);
        let c = super::Caches::get();
        assert!(c.l1d >= 4096 && c.l2 >= c.l1d);
    }
}
