//! The `#[detector]` attribute macro for vigil detectors.
//!
//! Placed on `impl Detector for YourType { ... }`, it checks the method
//! signatures (so mistakes get a readable error at the right place instead
//! of a trait-mismatch puzzle), re-emits the impl unchanged and, for
//! `target_arch = "wasm32"` only, adds the module's ABI exports and its
//! `vigil.detector` custom section. Use it through `vigil_sdk::detector`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned, ToTokens};
use syn::spanned::Spanned;
use syn::{FnArg, ImplItem, ImplItemFn, ItemImpl, ReturnType, Signature, Type};

const NEW_SIG: &str = "fn new(config: Self::Config) -> Result<Self>";
const PROCESS_SIG: &str = "fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()>";
const SNAPSHOT_SIG: &str = "fn snapshot(&self) -> Option<Result<Vec<u8>>>";
const RESTORE_SIG: &str = "fn restore(&mut self, state: &[u8]) -> Option<Result<()>>";

/// Makes `impl Detector for X` a vigil detector module.
///
/// See the `vigil_sdk` crate documentation for an example.
#[proc_macro_attribute]
pub fn detector(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr.into(), item.into()).into()
}

fn expand(attr: TokenStream2, item: TokenStream2) -> TokenStream2 {
    if !attr.is_empty() {
        return syn::Error::new_spanned(attr, "#[detector] takes no arguments").to_compile_error();
    }
    let imp: ItemImpl = match syn::parse2(item.clone()) {
        Ok(i) => i,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                "#[detector] must be placed on `impl Detector for YourType`",
            );
            let e = e.to_compile_error();
            return quote!(#e #item);
        }
    };
    let errors = check(&imp);
    if !errors.is_empty() {
        let errs = errors.iter().map(syn::Error::to_compile_error);
        // The impl is still emitted so the rest of the crate type-checks and
        // the user sees only the mistakes in the impl itself.
        return quote!(#(#errs)* #imp);
    }
    let ty = &imp.self_ty;
    let exports = exports(ty);
    quote!(#imp #exports)
}

/// Checks the impl's shape; returns every problem found.
fn check(imp: &ItemImpl) -> Vec<syn::Error> {
    let mut errors = Vec::new();
    let is_detector = match &imp.trait_ {
        Some((None, path, _)) => path.segments.last().is_some_and(|s| s.ident == "Detector"),
        _ => false,
    };
    if !is_detector {
        let span = match &imp.trait_ {
            Some((_, path, _)) => path.span(),
            None => imp.self_ty.span(),
        };
        errors.push(syn::Error::new(
            span,
            "#[detector] must be placed on `impl Detector for YourType`",
        ));
        return errors;
    }
    if !imp.generics.params.is_empty() {
        errors.push(syn::Error::new(
            imp.generics.span(),
            "#[detector] cannot export a generic impl: the module needs one concrete type \
             (wrap it: `struct Mine(Generic<f64>);`)",
        ));
    }
    let mut has_config = false;
    let mut has_new = false;
    let mut has_process = false;
    for item in &imp.items {
        match item {
            ImplItem::Type(t) if t.ident == "Config" => has_config = true,
            ImplItem::Type(t) => errors.push(syn::Error::new(
                t.ident.span(),
                format!(
                    "unknown associated type `{}` in impl Detector: only `type Config` exists",
                    t.ident
                ),
            )),
            ImplItem::Fn(f) => {
                let name = f.sig.ident.to_string();
                let problem = match name.as_str() {
                    "new" => {
                        has_new = true;
                        check_new(f)
                            .map(|at| (at, format!("`new` takes the config by value: `{NEW_SIG}`")))
                    }
                    "process" => {
                        has_process = true;
                        check_method(f, Recv::Mut, &[Ref::Shared, Ref::Mut]).map(|at| {
                            (
                                at,
                                format!("`process` must have the signature `{PROCESS_SIG}`"),
                            )
                        })
                    }
                    "snapshot" => check_method(f, Recv::Shared, &[]).map(|at| {
                        (
                            at,
                            format!("`snapshot` must have the signature `{SNAPSHOT_SIG}`"),
                        )
                    }),
                    "restore" => check_method(f, Recv::Mut, &[Ref::Shared]).map(|at| {
                        (
                            at,
                            format!("`restore` must have the signature `{RESTORE_SIG}`"),
                        )
                    }),
                    other => Some((
                        f.sig.ident.to_token_stream(),
                        format!(
                            "unknown method `{other}` in impl Detector: the trait has `new`, \
                             `process`, `snapshot` and `restore`; put helpers in a separate \
                             `impl {}` block",
                            type_name(&imp.self_ty)
                        ),
                    )),
                };
                if let Some((at, msg)) = problem {
                    errors.push(syn::Error::new_spanned(at, msg));
                }
            }
            _ => {}
        }
    }
    let missing = [
        (has_config, "missing `type Config = ...;` (the type the deployment's config JSON deserializes into; `()` for none)"),
        (has_new, "missing `fn new(config: Self::Config) -> Result<Self>`"),
        (has_process, "missing `fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()>`"),
    ];
    for (present, msg) in missing {
        if !present {
            errors.push(syn::Error::new(imp.self_ty.span(), msg));
        }
    }
    errors
}

fn type_name(ty: &Type) -> String {
    match ty {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .map_or_else(|| "YourType".into(), |s| s.ident.to_string()),
        _ => "YourType".into(),
    }
}

/// `None` if `new` looks right, else the tokens to point the error at.
fn check_new(f: &ImplItemFn) -> Option<TokenStream2> {
    let sig = &f.sig;
    if !plain(sig) || sig.inputs.len() != 1 {
        return Some(sig.to_token_stream());
    }
    match sig.inputs.first() {
        Some(FnArg::Typed(pt)) if matches!(*pt.ty, Type::Reference(_)) => {
            Some(pt.ty.to_token_stream())
        }
        Some(FnArg::Typed(_)) if matches!(sig.output, ReturnType::Default) => {
            Some(sig.to_token_stream())
        }
        Some(FnArg::Typed(_)) => None,
        Some(recv @ FnArg::Receiver(_)) => Some(recv.to_token_stream()),
        None => Some(sig.to_token_stream()),
    }
}

#[derive(PartialEq)]
enum Recv {
    Shared,
    Mut,
}

enum Ref {
    Shared,
    Mut,
}

/// `None` if the method has the receiver kind, the reference arguments of
/// the given mutability and a return type; else the tokens to point the
/// error at (the first wrong part).
fn check_method(f: &ImplItemFn, recv: Recv, args: &[Ref]) -> Option<TokenStream2> {
    let sig = &f.sig;
    if !plain(sig) || sig.inputs.len() != args.len() + 1 {
        return Some(sig.to_token_stream());
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(r))
            if r.reference.is_some() && (r.mutability.is_some() == (recv == Recv::Mut)) => {}
        Some(other) => return Some(other.to_token_stream()),
        None => return Some(sig.to_token_stream()),
    }
    for (arg, want) in inputs.zip(args) {
        let ok = match arg {
            FnArg::Typed(pt) => match (&*pt.ty, want) {
                (Type::Reference(r), Ref::Shared) => r.mutability.is_none(),
                (Type::Reference(r), Ref::Mut) => r.mutability.is_some(),
                _ => false,
            },
            FnArg::Receiver(_) => false,
        };
        if !ok {
            return Some(arg.to_token_stream());
        }
    }
    if matches!(sig.output, ReturnType::Default) {
        return Some(sig.to_token_stream());
    }
    None
}

/// No async/const/unsafe/extern/generics: the trait has none.
fn plain(sig: &Signature) -> bool {
    sig.asyncness.is_none()
        && sig.constness.is_none()
        && sig.unsafety.is_none()
        && sig.abi.is_none()
        && sig.generics.params.is_empty()
}

/// The wasm exports and the custom section for detector type `ty`.
fn exports(ty: &Type) -> TokenStream2 {
    let span = ty.span();
    let t = quote_spanned!(span=> #ty);
    quote! {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            pub extern "C" fn vigil_abi_version() -> i32 {
                ::vigil_sdk::__private::abi_version()
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn vigil_sdk_version() -> i32 {
                ::vigil_sdk::__private::sdk_version()
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn vigil_input(len: i32) -> i32 {
                ::vigil_sdk::__private::input(len)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn vigil_init(len: i32) -> i32 {
                ::vigil_sdk::__private::init::<#t>(len)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn vigil_process(len: i32) -> i32 {
                ::vigil_sdk::__private::process::<#t>(len)
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn vigil_snapshot() -> i32 {
                ::vigil_sdk::__private::snapshot::<#t>()
            }
            #[unsafe(no_mangle)]
            pub extern "C" fn vigil_restore(len: i32) -> i32 {
                ::vigil_sdk::__private::restore::<#t>(len)
            }

            const VIGIL_META_LEN: usize = ::vigil_sdk::__private::meta_len(
                ::core::env!("CARGO_PKG_NAME"),
                ::core::env!("CARGO_PKG_VERSION"),
            );
            /// Read by the host without running the module.
            #[unsafe(link_section = "vigil.detector")]
            #[used]
            static VIGIL_META: [u8; VIGIL_META_LEN] =
                ::vigil_sdk::__private::meta_bytes::<VIGIL_META_LEN>(
                    ::core::env!("CARGO_PKG_NAME"),
                    ::core::env!("CARGO_PKG_VERSION"),
                );
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_str(attr: &str, item: &str) -> String {
        let attr: TokenStream2 = attr.parse().unwrap();
        let item: TokenStream2 = item.parse().unwrap();
        expand(attr, item).to_string()
    }

    const GOOD: &str = "impl Detector for X {
        type Config = C;
        fn new(config: C) -> Result<Self> { todo!() }
        fn process(&mut self, batch: &Batch, alerts: &mut Alerts) -> Result<()> { Ok(()) }
        fn snapshot(&self) -> Option<Result<Vec<u8>>> { None }
        fn restore(&mut self, state: &[u8]) -> Option<Result<()>> { None }
    }";

    #[test]
    fn good_impl_gets_exports_and_section() {
        let out = expand_str("", GOOD);
        assert!(!out.contains("compile_error"), "{out}");
        for export in [
            "vigil_abi_version",
            "vigil_sdk_version",
            "vigil_input",
            "vigil_init",
            "vigil_process",
            "vigil_snapshot",
            "vigil_restore",
        ] {
            assert!(out.contains(&format!("fn {export}")), "missing {export}");
        }
        assert!(out.contains("\"vigil.detector\""));
        assert!(out.contains("target_arch = \"wasm32\""));
        assert!(out.contains("process :: < X >"), "{out}");
    }

    #[test]
    fn mistakes_are_explained() {
        let cases = [
            ("x", GOOD, "takes no arguments"),
            ("", "struct S;", "must be placed on `impl Detector for YourType`"),
            ("", "impl Other for X {}", "must be placed on"),
            (
                "",
                "impl<T> Detector for X<T> { type Config = (); fn new(c: ()) -> Result<Self> {} fn process(&mut self, b: &Batch, a: &mut Alerts) -> Result<()> {} }",
                "cannot export a generic impl",
            ),
            (
                "",
                "impl Detector for X { type Config = (); fn new(c: ()) -> Result<Self> {} async fn process(&mut self, b: &Batch, a: &mut Alerts) -> Result<()> {} }",
                "`process` must have the signature",
            ),
            (
                "",
                "impl Detector for X { type Config = (); fn new(c: ()) -> Result<Self> {} fn process(&self, b: &Batch, a: &mut Alerts) -> Result<()> {} }",
                "`process` must have the signature",
            ),
            (
                "",
                "impl Detector for X { type Config = (); fn new(c: ()) -> Result<Self> {} fn process(&mut self, b: &Batch, a: &Alerts) -> Result<()> {} }",
                "`process` must have the signature",
            ),
            (
                "",
                "impl Detector for X { type Config = (); fn new(&self) -> Result<Self> {} fn process(&mut self, b: &Batch, a: &mut Alerts) -> Result<()> {} }",
                "`new` takes the config by value",
            ),
            (
                "",
                "impl Detector for X { type Config = (); fn new(c: ()) -> Result<Self> {} fn process(&mut self, b: &Batch, a: &mut Alerts) -> Result<()> {} fn snapshot(&mut self) -> Option<Result<Vec<u8>>> {} }",
                "`snapshot` must have the signature",
            ),
            (
                "",
                "impl Detector for X { type Config = (); fn new(c: ()) -> Result<Self> {} fn process(&mut self, b: &Batch, a: &mut Alerts) -> Result<()> {} fn restore(&mut self, s: Vec<u8>) -> Option<Result<()>> {} }",
                "`restore` must have the signature",
            ),
            (
                "",
                "impl Detector for X { type Config = (); type State = (); fn new(c: ()) -> Result<Self> {} fn process(&mut self, b: &Batch, a: &mut Alerts) -> Result<()> {} }",
                "unknown associated type `State`",
            ),
            (
                "",
                "impl Detector for X { type Config = (); fn new(c: ()) -> Result<Self> {} }",
                "missing `fn process",
            ),
            (
                "",
                "impl Detector for X { type Config = (); fn process(&mut self, b: &Batch, a: &mut Alerts) -> Result<()> {} }",
                "missing `fn new",
            ),
        ];
        for (attr, item, want) in cases {
            let out = expand_str(attr, item);
            assert!(out.contains("compile_error"), "no error for {item}");
            assert!(out.contains(want), "{item}: wanted {want:?} in {out}");
            assert!(!out.contains("vigil_process"), "exports emitted for {item}");
        }
    }
}
