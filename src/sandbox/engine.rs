//! The compiler and its settings ([`Engine`]): loading a module checks it,
//! prepares its memory image, compiles it with the checks the guest needs
//! (or takes it from the AOT cache) and opens its mounts once.

use std::path::Path;
use std::sync::Arc;

use super::{
    CStrings, Checks, Engine, Error, INTERPRETER_SECTION, Initializer, Mount, Probe, Program, Snapshot, Stdio, cache,
    image, interrupt, memory, wasi,
};

impl Default for Engine {
    fn default() -> Self {
        Engine {
            engine: engine_with(wasmer::sys::Cranelift::default()),
            cache: None,
            interruptible: true,
            track_writes: true,
        }
    }
}

fn engine_with(compiler: wasmer::sys::Cranelift) -> wasmer::Engine {
    use wasmer::sys::NativeEngineExt;
    let mut engine: wasmer::Engine = compiler.into();
    engine.set_tunables(memory::PooledTunables::new());
    engine
}

impl Checks {
    /// A compiler that adds these checks to `wasm`, the one module it
    /// compiles (a middleware serves one module); `None` when there are
    /// none. Its code
    /// runs in any of our engines: the tunables are the same.
    pub(super) fn compiler(self, wasm: &[u8]) -> Result<Option<wasmer::Engine>, String> {
        use wasmer::sys::CompilerConfig;
        if !self.interrupt && !self.fuel {
            return Ok(None);
        }
        let mut compiler = wasmer::sys::Cranelift::default();
        if self.interrupt {
            compiler.push_middleware(Arc::new(interrupt::Check::for_module(wasm)?));
        }
        if self.fuel {
            // No fuel until a run is given some: an instance never runs
            // unmetered.
            compiler.push_middleware(Arc::new(wasmer_middlewares::Metering::new(
                0,
                |_: &wasmer::wasmparser::Operator| 1,
            )));
        }
        Ok(Some(engine_with(compiler)))
    }
}

impl Engine {
    /// Compiles guests without the interrupt check: a guest that computes
    /// without calling the host then cannot be stopped but by ending its
    /// process. For measuring what the check costs.
    pub fn without_interrupt_check(mut self) -> Engine {
        self.interruptible = false;
        self
    }

    /// Resets memory images by discarding them whole, as where the kernel
    /// cannot track written pages: the next request faults in again every
    /// page it reads. For measuring the difference.
    pub fn without_write_tracking(mut self) -> Engine {
        self.track_writes = false;
        self
    }

    /// Keeps compiled modules in `dir` (see `cache`).
    pub fn with_cache(mut self, dir: &Path) -> Result<Engine, Error> {
        let cache = cache::Cache::open(dir, &self.engine).map_err(|source| Error::Cache {
            dir: dir.into(),
            source,
        })?;
        self.cache = Some(Arc::new(cache));
        Ok(self)
    }

    /// The directory compiled modules are kept in, if any.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.cache.as_deref().map(cache::Cache::dir)
    }

    /// Reads, compiles (or loads from the cache) and link-checks the module
    /// at `path`, and opens its mounts. Everything a request could trip over
    /// later is found here.
    pub fn load(&self, path: &Path, mounts: &[Mount]) -> Result<Program, Error> {
        self.load_as(path, mounts, false)
    }

    /// [`Engine::load`], the code compiled with fuel metering
    /// (wasmer-middlewares' `Metering`, a point per operator): every run then
    /// stops once it has spent the fuel given by [`Program::with_fuel`].
    /// Metered code runs slower: +70–80 % on a tight loop, as measured
    /// on this machine kind when the limits were specified.
    pub fn load_metered(&self, path: &Path, mounts: &[Mount]) -> Result<Program, Error> {
        self.load_as(path, mounts, true)
    }

    fn load_as(&self, path: &Path, mounts: &[Mount], metered: bool) -> Result<Program, Error> {
        let bytes = std::fs::read(path).map_err(|source| Error::Read {
            path: path.into(),
            source,
        })?;
        let checks = Checks {
            interrupt: self.interruptible,
            fuel: metered,
        };
        let (engine, module, image) = self.compile(path, &bytes, checks)?;
        let image = image
            .map(|bytes| memory::Image::new(&bytes, self.track_writes))
            .transpose()
            .map_err(|source| Error::Image {
                path: path.into(),
                source,
            })?;
        let imports = wasi::resolve(&self.engine, &module).map_err(|why| Error::Link { path: path.into(), why })?;
        let preopens = open_mounts(mounts)?;
        let interpreter = module.custom_sections(INTERPRETER_SECTION).next();
        Ok(Program {
            image,
            engine,
            imports,
            preopens,
            memory_limit: None,
            scratch: 0,
            fuel: metered.then_some(0),
            interrupt: interrupt::Layout::of(&module),
            request_on_stdin: interpreter.is_some(),
            rewind: interpreter.and_then(|s| Some(u32::from_le_bytes(s.get(..4)?.try_into().ok()?))),
            module,
        })
    }

    /// Compiles `wasm` as it is (no cache, no image), instantiates it with
    /// `mounts`, `args`, `env` and a scratch directory of `scratch` bytes,
    /// runs `init` and captures the state
    /// through the exports named in `probe`: the work of `wcgid preinit`.
    #[allow(clippy::too_many_arguments)]
    pub fn snapshot<S: Stdio>(
        &self,
        path: &Path,
        wasm: &[u8],
        mounts: &[Mount],
        launch: (CStrings, CStrings, u64),
        init: &mut dyn Initializer,
        probe: &Probe,
        stdio: S,
    ) -> Result<Snapshot, Error> {
        let module = wasmer::Module::new(&self.engine, wasm).map_err(|source| Error::Compile {
            path: path.into(),
            source,
        })?;
        let imports =
            wasi::resolve_imports(&self.engine, &module).map_err(|why| Error::Link { path: path.into(), why })?;
        let preopens = open_mounts(mounts)?;
        wasi::snapshot::take(&self.engine, &module, &imports, preopens, launch, stdio, init, probe)
            .map_err(|why| Error::Init { path: path.into(), why })
    }

    /// The module compiled for serving, with `checks`, the engine that
    /// holds its code, and its memory image: from the cache if it has them,
    /// else compiled now (and stored).
    fn compile(
        &self,
        path: &Path,
        wasm: &[u8],
        checks: Checks,
    ) -> Result<(wasmer::Engine, wasmer::Module, Option<Vec<u8>>), Error> {
        if let Some(entry) = self.cache.as_ref().and_then(|c| c.get(&self.engine, wasm, checks)) {
            tracing::debug!(module = %path.display(), "loaded from the AOT cache");
            return Ok((self.engine.clone(), entry.module, entry.image));
        }
        let started = std::time::Instant::now();
        let prepared = image::prepare(wasm).map_err(|why| Error::Invalid { path: path.into(), why })?;
        let compiler = checks
            .compiler(&prepared.module)
            .map_err(|why| Error::Invalid { path: path.into(), why })?
            .unwrap_or_else(|| self.engine.clone());
        let module = wasmer::Module::new(&compiler, &prepared.module).map_err(|source| Error::Compile {
            path: path.into(),
            source,
        })?;
        tracing::info!(
            module = %path.display(),
            ms = started.elapsed().as_millis(),
            interrupt = checks.interrupt,
            metered = checks.fuel,
            "compiled"
        );
        if let Some(cache) = &self.cache {
            cache.put(wasm, checks, &module, prepared.image.as_deref());
        }
        Ok((compiler, module, prepared.image))
    }
}

fn open_mounts(mounts: &[Mount]) -> Result<Arc<[wasi::Preopen]>, Error> {
    mounts
        .iter()
        .map(|m| {
            wasi::Preopen::open(m).map_err(|source| Error::Mount {
                host: m.host.clone(),
                guest: m.guest.clone(),
                source,
            })
        })
        .collect()
}
