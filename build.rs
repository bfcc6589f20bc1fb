//! Keeps the hand-written C header and the Rust exports from drifting apart.
//!
//! 1. bindgen turns `include/nmq_outbox.h` into Rust types (structs, enum constants) that the
//!    `ffi` module uses as the types of its exports: the header is their single source.
//! 2. From bindgen's function declarations this script generates, for every function of the
//!    header, `const _: unsafe extern "C" fn(<header's parameters>) -> <header's result> =
//!    <our export>;`. A missing export, or one whose signature differs, fails the build.
//! 3. It scans every file of `src/ffi/` (and `src/nng.rs`) for `#[no_mangle]` functions and
//!    fails the build if one is not declared in a header.
//!
//! With the `nng` feature the same is done for `include/nmq_outbox_nng.h`, and bindgen also
//! declares the nng functions we call, from `<nng/nng.h>` (Debian's libnng-dev by default; set
//! NMQ_OUTBOX_NNG_INCLUDE to another include directory, e.g. NanoNNG's `include`).

use std::collections::BTreeSet;
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let nng = env::var_os("CARGO_FEATURE_NNG").is_some();
    println!("cargo:rerun-if-changed=include/nmq_outbox.h");
    println!("cargo:rerun-if-changed=include/nmq_outbox_nng.h");
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=src/nng.rs");
    println!("cargo:rerun-if-changed=src/nng");
    println!("cargo:rerun-if-env-changed=NMQ_OUTBOX_NNG_INCLUDE");

    let header = "include/nmq_outbox.h";
    let base = || {
        bindgen::Builder::default()
            .header(header)
            .allowlist_item("nmq_outbox.*|NMQ_OUTBOX.*")
            .default_enum_style(bindgen::EnumVariation::Consts)
            .prepend_enum_name(false)
            .layout_tests(true)
            .derive_default(true)
    };
    // Types and constants only: the functions are ours, not foreign.
    let types = base()
        .ignore_functions()
        .generate()
        .expect("bindgen on nmq_outbox.h");
    types.write_to_file(out.join("header.rs")).unwrap();
    let with_fns = base()
        .generate()
        .expect("bindgen on nmq_outbox.h")
        .to_string();
    let mut declared = foreign_fns(&with_fns);
    fs::write(out.join("header_checks.rs"), checks(&declared)).unwrap();

    if nng {
        let mut clang_args = Vec::new();
        if let Some(dir) = env::var_os("NMQ_OUTBOX_NNG_INCLUDE") {
            clang_args.push(format!("-I{}", Path::new(&dir).display()));
        }
        let wrapper = "#include <nng/nng.h>\n#include \"include/nmq_outbox_nng.h\"\n";
        let nng_base = || {
            bindgen::Builder::default()
                .header_contents("nmq_outbox_nng_wrapper.h", wrapper)
                .clang_args(clang_args.iter())
                .default_enum_style(bindgen::EnumVariation::Consts)
                .prepend_enum_name(false)
                .layout_tests(true)
                .blocklist_type("nmq_outbox.*")
                .blocklist_var("NMQ_OUTBOX.*")
                .allowlist_type("nng_aio|nng_msg|nng_duration")
                .raw_line("#[allow(unused_imports)] use crate::ffi::sys::*;")
        };
        // The nng functions we call, as foreign declarations.
        let nng_fns = "nng_msg_header|nng_msg_header_len|nng_msg_body|nng_msg_len|\
                       nng_msg_alloc|nng_msg_header_append|nng_msg_append|nng_msg_free|\
                       nng_aio_get_msg|nng_aio_set_msg|nng_aio_set_timeout|nng_aio_finish";
        nng_base()
            .allowlist_function(nng_fns)
            .generate()
            .expect("bindgen on <nng/nng.h>: is libnng-dev installed?")
            .write_to_file(out.join("nng_bindings.rs"))
            .unwrap();
        // Our nng-facing exports, for the signature checks only.
        let ours = nng_base()
            .allowlist_function("nmq_outbox_nng_.*")
            .generate()
            .expect("bindgen on nmq_outbox_nng.h")
            .to_string();
        let nng_declared = foreign_fns(&ours);
        fs::write(out.join("nng_checks.rs"), checks(&nng_declared)).unwrap();
        declared.extend(nng_declared);
    }

    // Reverse direction: every export of ours is declared in a header.
    let mut exported = BTreeSet::new();
    let mut ffi: Vec<PathBuf> = fs::read_dir("src/ffi")
        .expect("src/ffi")
        .map(|e| e.expect("src/ffi entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    ffi.sort();
    assert!(ffi.len() > 1, "src/ffi holds the exports");
    for f in &ffi {
        exported.extend(no_mangle_fns(f.to_str().expect("UTF-8 path")));
    }
    if nng {
        exported.extend(no_mangle_fns("src/nng.rs"));
        for e in fs::read_dir("src/nng").expect("src/nng") {
            let p = e.expect("src/nng entry").path();
            exported.extend(no_mangle_fns(p.to_str().expect("UTF-8 path")));
        }
    }
    let names: BTreeSet<String> = declared.iter().map(|f| f.sig.ident.to_string()).collect();
    let undeclared: Vec<_> = exported.difference(&names).collect();
    if !undeclared.is_empty() {
        panic!("exported but not declared in include/*.h: {undeclared:?}");
    }
}

/// The functions of bindgen's `extern "C"` blocks.
fn foreign_fns(bindings: &str) -> Vec<syn::ForeignItemFn> {
    let file = syn::parse_file(bindings).expect("parse bindgen output");
    let mut fns = Vec::new();
    for item in file.items {
        if let syn::Item::ForeignMod(m) = item {
            for f in m.items {
                if let syn::ForeignItem::Fn(f) = f {
                    fns.push(f);
                }
            }
        }
    }
    fns
}

/// One `const _: <header's fn type> = <our fn>;` per declared function.
fn checks(fns: &[syn::ForeignItemFn]) -> String {
    let mut s =
        String::from("// Generated by build.rs: the header's prototypes against our exports.\n");
    for f in fns {
        let name = &f.sig.ident;
        let args: Vec<_> = f
            .sig
            .inputs
            .iter()
            .map(|a| match a {
                syn::FnArg::Typed(t) => t.ty.clone(),
                syn::FnArg::Receiver(_) => unreachable!(),
            })
            .collect();
        let ret = &f.sig.output;
        let ty = quote::quote! { unsafe extern "C" fn(#(#args),*) #ret };
        s.push_str(&format!("const _: {ty} = {name};\n"));
    }
    s
}

/// Names of the `#[no_mangle]` functions of a source file.
fn no_mangle_fns(path: &str) -> Vec<String> {
    let src = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let file = syn::parse_file(&src).unwrap_or_else(|e| panic!("parse {path}: {e}"));
    file.items
        .iter()
        .filter_map(|item| match item {
            syn::Item::Fn(f)
                if f.attrs.iter().any(|a| {
                    let p = a.path();
                    p.is_ident("no_mangle")
                        || (p.is_ident("unsafe")
                            && a.meta
                                .require_list()
                                .is_ok_and(|l| l.tokens.to_string().contains("no_mangle")))
                }) =>
            {
                Some(f.sig.ident.to_string())
            }
            _ => None,
        })
        .collect()
}
