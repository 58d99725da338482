//! Chat templates: a conversation (messages of role and content) rendered as the prompt text the
//! model was trained on, chosen by the package's `chat_template` kind (SLM1 tokenizer section).
//!
//! The one place a template is written out: the eval runner, `trl` and (through an export, later)
//! the JS wrapper render with [`render`]. The flags and the message list are what an export would
//! pass, so the JS side's `formatChatML` and its continued chats map onto it one to one.

use alloc::vec::Vec;

use super::ChatTemplate;
use crate::error::{Error, Result, Status};
use crate::field;
use crate::reader::{Entry, Reader};

/// SmolLM2's default system prompt: its template puts it first when a conversation has none.
pub const SMOLLM2_DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";
/// Qwen2.5's default system prompt (its GGUF `tokenizer.chat_template`, the branch without a
/// system message); the package says which family's applies ([`ChatTemplate::default_system`]).
pub const QWEN2_DEFAULT_SYSTEM: &str = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/// The flags are ABI facts (`TRL_CHAT_*`, the `render_chat` export's). `CHAT_ADD_GENERATION_PROMPT`
/// ends with the opening of an assistant turn, so that generation writes the answer.
/// `CHAT_CONTINUE`: the messages continue a conversation already in the KV cache whose last turn,
/// the model's answer, ended on the template's end-of-turn token (generation stopped there, so the
/// token is in the cache): render only what follows that token. Use with `GEN_CONTINUE`. A
/// continued conversation already has its system prompt, so no default one may be given.
pub use crate::abi_facts::{CHAT_ADD_GENERATION_PROMPT, CHAT_CONTINUE};
/// What [`render`] takes; `CHAT_NO_DEFAULT_SYSTEM` is the export's way to say `default_system: None`.
const CHAT_KNOWN: u32 = CHAT_ADD_GENERATION_PROMPT | CHAT_CONTINUE;

/// One turn of a conversation. `role` is the template's word for the speaker (`system`, `user`,
/// `assistant`); it is written as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatMessage<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

// ChatML as SmolLM2's template writes it: `<|im_start|>{role}\n{content}<|im_end|>\n` per message.
const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";
const CHATML_GENERATION_PROMPT: &str = "<|im_start|>assistant\n";

// Gemma 3's template: `<start_of_turn>{role}\n{content}<end_of_turn>\n` per message, the assistant's
// role written `model`; BOS comes from the tokenizer (`ADD_BOS`), not from the text.
const START_OF_TURN: &str = "<start_of_turn>";
const END_OF_TURN: &str = "<end_of_turn>";
const GEMMA_GENERATION_PROMPT: &str = "<start_of_turn>model\n";
/// Gemma's template puts a leading system message's content, then this, before the first turn's.
const GEMMA_SYSTEM_SEPARATOR: &str = "\n\n";

/// What follows the end-of-turn token (`<|im_end|>`, `<end_of_turn>`) before the next turn, in both
/// families; the token itself is already in the KV cache when a conversation continues.
const AFTER_END_OF_TURN: &str = "\n";

/// Renders `messages` with `template`. Without [`CHAT_CONTINUE`], `default_system` (if given) is put
/// first when the first message is not a `system` message, as SmolLM2's template does with
/// [`SMOLLM2_DEFAULT_SYSTEM`].
///
/// - ChatML (`ChatMl`, `ChatMlQwen2`): `<|im_start|>{role}\n{content}<|im_end|>\n` per message, roles
///   and contents as given; `CHAT_ADD_GENERATION_PROMPT` appends `<|im_start|>assistant\n`.
/// - `Gemma` (Gemma 3's template): `<start_of_turn>{role}\n{content}<end_of_turn>\n` per message,
///   `assistant` written `model`, every content trimmed of surrounding whitespace (the template's
///   Jinja `trim`: Python's `str.strip`, Unicode White_Space and U+001C..=U+001F). A first `system`
///   message has no turn of its own: its content (untrimmed), then `"\n\n"`, starts the next
///   message's content. `CHAT_ADD_GENERATION_PROMPT` appends `<start_of_turn>model\n`. The template
///   has no default system prompt; roles are not checked for alternation.
///
/// With `CHAT_CONTINUE` the text starts with the `"\n"` that follows the end-of-turn token in the
/// cache, and messages are turns as they come (a `system` message is a turn of that role), so that
/// the continued text is exactly the suffix of the whole conversation's.
///
/// Errors: `INVALID_ARGUMENT` for a package without a chat template, unknown flags, or a default
/// system prompt with [`CHAT_CONTINUE`]; `OUT_OF_MEMORY` if the text does not fit (one allocation,
/// made before anything is written).
pub fn render(template: ChatTemplate, messages: &[ChatMessage<'_>], default_system: Option<&str>, flags: u32) -> Result<Vec<u8>> {
    if flags & !CHAT_KNOWN != 0 {
        return Err(Error::new(Status::InvalidArgument, "chat.flags", flags as u64, "only ADD_GENERATION_PROMPT (1) and CONTINUE (2) are defined"));
    }
    let continuing = flags & CHAT_CONTINUE != 0;
    if continuing && default_system.is_some() {
        return Err(Error::new(Status::InvalidArgument, "chat.default_system", 0, "a continued conversation already has its system prompt"));
    }
    if template == ChatTemplate::None {
        return Err(Error::new(Status::InvalidArgument, "tokenizer.chat_template", ChatTemplate::None as u64, "the package names no chat template"));
    }
    let system = match messages.first() {
        Some(m) if m.role == "system" => None,
        _ if continuing => None,
        _ => default_system.map(|content| ChatMessage { role: "system", content }),
    };
    let add_generation_prompt = flags & CHAT_ADD_GENERATION_PROMPT != 0;
    let write = |sink: &mut dyn FnMut(&str)| write_conversation(template, system.as_ref(), messages, continuing, add_generation_prompt, sink);
    // Measure, reserve once, then write into the room reserved.
    let mut len = Some(0usize);
    write(&mut |part| len = len.and_then(|l| l.checked_add(part.len())));
    let oom = || Error::new(Status::OutOfMemory, "chat.prompt", len.unwrap_or(usize::MAX) as u64, "allocation failed (bytes requested)");
    let mut out = Vec::new();
    out.try_reserve_exact(len.ok_or_else(oom)?).map_err(|_| oom())?;
    write(&mut |part| out.extend_from_slice(part.as_bytes()));
    debug_assert_eq!(Some(out.len()), len);
    Ok(out)
}

/// The conversation's text, part by part: `system` (the default system prompt, when it applies)
/// goes before `messages`.
fn write_conversation(
    template: ChatTemplate,
    system: Option<&ChatMessage<'_>>,
    messages: &[ChatMessage<'_>],
    continuing: bool,
    add_generation_prompt: bool,
    sink: &mut dyn FnMut(&str),
) {
    if continuing {
        sink(AFTER_END_OF_TURN);
    }
    match template {
        ChatTemplate::None => {}
        // Both families write the same ChatML; they differ only in the default system prompt, which
        // the caller passes (`ChatTemplate::default_system`).
        ChatTemplate::ChatMl | ChatTemplate::ChatMlQwen2 => {
            for m in system.into_iter().chain(messages) {
                for part in [IM_START, m.role, "\n", m.content, IM_END, "\n"] {
                    sink(part);
                }
            }
            if add_generation_prompt {
                sink(CHATML_GENERATION_PROMPT);
            }
        }
        ChatTemplate::Gemma => {
            // A leading system message (the caller's, or the default) prefixes the first turn.
            let (prefix, turns) = match (system, messages.split_first()) {
                (Some(s), _) => (Some(s.content), messages),
                (None, Some((first, rest))) if first.role == "system" && !continuing => (Some(first.content), rest),
                _ => (None, messages),
            };
            for (i, m) in turns.iter().enumerate() {
                let role = if m.role == "assistant" { "model" } else { m.role };
                for part in [START_OF_TURN, role, "\n"] {
                    sink(part);
                }
                if let (0, Some(prefix)) = (i, prefix) {
                    sink(prefix);
                    sink(GEMMA_SYSTEM_SEPARATOR);
                }
                for part in [jinja_trim(m.content), END_OF_TURN, "\n"] {
                    sink(part);
                }
            }
            if add_generation_prompt {
                sink(GEMMA_GENERATION_PROMPT);
            }
        }
    }
}

/// Jinja's `trim` filter, which is Python's `str.strip()`: Unicode White_Space, and U+001C..=U+001F,
/// which Python also counts as whitespace.
fn jinja_trim(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

/// Bytes of the smallest encoded message: its two length words.
const MIN_ENCODED_MESSAGE: u64 = 8;

/// Reads the message list `render_chat` takes (the header spells it out byte by byte): `u32
/// n_messages`, then per message `u32 role_len`, the role's bytes, `u32 content_len`, the
/// content's bytes; little-endian, no padding, nothing after the last message. Roles and contents
/// must be UTF-8 and are borrowed, not copied.
///
/// Errors (all `INVALID_ARGUMENT`, the field naming the message and part, the value its offset):
/// bytes ending inside a field, `n_messages` more than the bytes could hold, text that is not UTF-8,
/// bytes after the last message. `OUT_OF_MEMORY` if the list of `n_messages` does not fit.
pub fn decode_messages(bytes: &[u8]) -> Result<Vec<ChatMessage<'_>>> {
    let mut r = Reader::new(bytes, 0, "messages", Status::InvalidArgument);
    let n = r.u32("n_messages")?;
    r.room_for(n as u64, MIN_ENCODED_MESSAGE, "messages.n_messages", n as u64, "more messages than the bytes hold (8 bytes at least each)")?;
    let mut messages = Vec::new();
    messages.try_reserve_exact(n as usize).map_err(|_| crate::error::oom("messages", n as usize * core::mem::size_of::<ChatMessage<'_>>()))?;
    for i in 0..n as usize {
        r.enter("messages", Entry::Index(i));
        let role = read_text(&mut r, i, "role_len", "role")?;
        let content = read_text(&mut r, i, "content_len", "content")?;
        messages.push(ChatMessage { role, content });
    }
    if r.remaining() != 0 {
        return Err(Error::new(Status::InvalidArgument, "messages", r.offset() as u64, "bytes after the last message (value = their offset)"));
    }
    Ok(messages)
}

/// One length-prefixed UTF-8 string of message `i`.
fn read_text<'a>(r: &mut Reader<'a>, i: usize, len_leaf: &str, leaf: &str) -> Result<&'a str> {
    let len = r.u32(len_leaf)?;
    let at = r.offset();
    let bytes = r.take(len as usize, leaf)?;
    core::str::from_utf8(bytes)
        .map_err(|_| Error::new(Status::InvalidArgument, field!("messages[{i}].{leaf}"), at as u64, "must be UTF-8 (value = its offset)"))
}

/// The encoding [`decode_messages`] reads (for tests and hosts written in Rust).
pub fn encode_messages(messages: &[ChatMessage<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(messages.len() as u32).to_le_bytes());
    for m in messages {
        for part in [m.role, m.content] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chatml(messages: &[ChatMessage<'_>], default_system: Option<&str>, flags: u32) -> alloc::string::String {
        alloc::string::String::from_utf8(render(ChatTemplate::ChatMl, messages, default_system, flags).unwrap()).unwrap()
    }

    const USER: ChatMessage<'static> = ChatMessage { role: "user", content: "Hi" };

    #[test]
    fn one_user_turn_is_smollm2s_rendering() {
        // SmolLM2's `apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)`.
        assert_eq!(
            chatml(&[USER], Some(SMOLLM2_DEFAULT_SYSTEM), CHAT_ADD_GENERATION_PROMPT),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_system_message_replaces_the_default_and_none_leaves_it_out() {
        let own = [ChatMessage { role: "system", content: "Be brief." }, USER];
        assert_eq!(chatml(&own, Some(SMOLLM2_DEFAULT_SYSTEM), 0), "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
        assert_eq!(chatml(&[USER], None, 0), "<|im_start|>user\nHi<|im_end|>\n");
        assert_eq!(chatml(&[], Some("S"), 0), "<|im_start|>system\nS<|im_end|>\n", "an empty conversation still gets the system prompt");
        assert_eq!(chatml(&[], None, CHAT_ADD_GENERATION_PROMPT), "<|im_start|>assistant\n");
    }

    #[test]
    fn a_continued_conversation_is_the_suffix_of_the_whole_one() {
        // What the KV cache holds after the first answer: the first rendering, the answer, and the
        // end-of-turn token the answer stopped on.
        let answer = "Hello!";
        let first = chatml(&[USER], Some(SMOLLM2_DEFAULT_SYSTEM), CHAT_ADD_GENERATION_PROMPT);
        let in_cache = alloc::format!("{first}{answer}<|im_end|>");
        let next = ChatMessage { role: "user", content: "And you?" };
        let whole = chatml(&[USER, ChatMessage { role: "assistant", content: answer }, next], Some(SMOLLM2_DEFAULT_SYSTEM), CHAT_ADD_GENERATION_PROMPT);
        let continued = chatml(&[next], None, CHAT_ADD_GENERATION_PROMPT | CHAT_CONTINUE);
        assert_eq!(continued, "\n<|im_start|>user\nAnd you?<|im_end|>\n<|im_start|>assistant\n");
        assert_eq!(alloc::format!("{in_cache}{continued}"), whole);
    }

    #[test]
    fn qwen2_packages_get_qwens_default_system_prompt() {
        // Qwen2.5-Coder-Instruct's template with one user message and add_generation_prompt.
        let system = ChatTemplate::ChatMlQwen2.default_system();
        let text = render(ChatTemplate::ChatMlQwen2, &[USER], system, CHAT_ADD_GENERATION_PROMPT).unwrap();
        assert_eq!(
            alloc::string::String::from_utf8(text).unwrap(),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(ChatTemplate::ChatMl.default_system(), Some(SMOLLM2_DEFAULT_SYSTEM));
        assert_eq!(ChatTemplate::None.default_system(), None);
    }

    fn gemma(messages: &[ChatMessage<'_>], default_system: Option<&str>, flags: u32) -> alloc::string::String {
        alloc::string::String::from_utf8(render(ChatTemplate::Gemma, messages, default_system, flags).unwrap()).unwrap()
    }

    #[test]
    fn gemma_turns_with_the_assistant_written_model() {
        // Gemma 3's template with add_generation_prompt (its `{{ bos_token }}` is the tokenizer's BOS).
        assert_eq!(gemma(&[USER], None, CHAT_ADD_GENERATION_PROMPT), "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
        assert_eq!(ChatTemplate::Gemma.default_system(), None);
        let chat = [USER, ChatMessage { role: "assistant", content: "Hello!" }, ChatMessage { role: "user", content: "And you?" }];
        assert_eq!(
            gemma(&chat, None, 0),
            "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nAnd you?<end_of_turn>\n"
        );
        assert_eq!(gemma(&[], None, CHAT_ADD_GENERATION_PROMPT), "<start_of_turn>model\n");
        assert_eq!(gemma(&[], None, 0), "");
    }

    #[test]
    fn gemma_puts_the_system_message_before_the_first_turns_content() {
        let own = [ChatMessage { role: "system", content: "Be brief." }, USER];
        let want = "<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n";
        assert_eq!(gemma(&own, None, CHAT_ADD_GENERATION_PROMPT), want);
        // A default system prompt (`trl --system`) is the same as a leading system message, and a
        // system message of the caller's replaces it.
        assert_eq!(gemma(&[USER], Some("Be brief."), CHAT_ADD_GENERATION_PROMPT), want);
        assert_eq!(gemma(&own, Some("Other."), CHAT_ADD_GENERATION_PROMPT), want);
        // Nothing follows the system message: the template drops it.
        assert_eq!(gemma(&own[..1], None, CHAT_ADD_GENERATION_PROMPT), "<start_of_turn>model\n");
        // A later system message is a turn of its own, role as given.
        let later = [USER, ChatMessage { role: "system", content: "S" }];
        assert_eq!(gemma(&later, None, 0), "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>system\nS<end_of_turn>\n");
    }

    #[test]
    fn gemma_trims_contents_as_its_template_does() {
        // `message['content'] | trim`; the system content is not trimmed (`messages[0]['content'] + '\n\n'`).
        let chat = [ChatMessage { role: "system", content: " S\n" }, ChatMessage { role: "user", content: "\n\t Hi there \u{3000}\u{1f}" }];
        assert_eq!(gemma(&chat, None, 0), "<start_of_turn>user\n S\n\n\nHi there<end_of_turn>\n");
        assert_eq!(jinja_trim("\u{a0}\u{85}x y\u{2028}"), "x y");
        assert_eq!(jinja_trim("\u{200b}x"), "\u{200b}x", "zero-width space is not whitespace");
        assert_eq!(jinja_trim(" \r\n"), "");
    }

    #[test]
    fn a_continued_gemma_conversation_is_the_suffix_of_the_whole_one() {
        let answer = "Hello!";
        let system = ChatMessage { role: "system", content: "Be brief." };
        let first = gemma(&[system, USER], None, CHAT_ADD_GENERATION_PROMPT);
        let in_cache = alloc::format!("{first}{answer}<end_of_turn>");
        let next = ChatMessage { role: "user", content: "And you?" };
        let whole = gemma(&[system, USER, ChatMessage { role: "assistant", content: answer }, next], None, CHAT_ADD_GENERATION_PROMPT);
        let continued = gemma(&[next], None, CHAT_ADD_GENERATION_PROMPT | CHAT_CONTINUE);
        assert_eq!(continued, "\n<start_of_turn>user\nAnd you?<end_of_turn>\n<start_of_turn>model\n");
        assert_eq!(alloc::format!("{in_cache}{continued}"), whole);
        // Continuing, a system message is a turn (the whole conversation's would be one there too).
        let s = ChatMessage { role: "system", content: "S" };
        assert_eq!(gemma(&[s], None, CHAT_CONTINUE), "\n<start_of_turn>system\nS<end_of_turn>\n");
        let e = render(ChatTemplate::Gemma, &[next], Some("S"), CHAT_CONTINUE).unwrap_err();
        assert_eq!(e.field.as_str(), "chat.default_system");
    }

    #[test]
    fn template_codes_round_trip() {
        for t in ChatTemplate::ALL {
            assert_eq!(ChatTemplate::from_code(t as u32), Some(t));
        }
        assert_eq!(ChatTemplate::from_code(4), None);
        assert_eq!(ChatTemplate::Gemma.name(), "gemma");
    }

    #[test]
    fn refusals_have_their_status_and_field() {
        let e = render(ChatTemplate::None, &[USER], None, 0).unwrap_err();
        assert_eq!((e.status, e.field.as_str()), (Status::InvalidArgument, "tokenizer.chat_template"));
        let e = render(ChatTemplate::ChatMl, &[USER], None, 4).unwrap_err();
        assert_eq!((e.status, e.field.as_str(), e.value), (Status::InvalidArgument, "chat.flags", 4));
        let e = render(ChatTemplate::ChatMl, &[USER], Some("S"), CHAT_CONTINUE).unwrap_err();
        assert_eq!((e.status, e.field.as_str()), (Status::InvalidArgument, "chat.default_system"));
    }
    #[test]
    fn the_message_encoding_round_trips_and_rejects_malformed_bytes() {
        let messages =
            [ChatMessage { role: "system", content: "S" }, ChatMessage { role: "user", content: "Grüß dich" }, ChatMessage { role: "assistant", content: "" }];
        let bytes = encode_messages(&messages);
        assert_eq!(&bytes[..8], &[3, 0, 0, 0, 6, 0, 0, 0]);
        assert_eq!(decode_messages(&bytes).unwrap(), messages);
        assert_eq!(decode_messages(&[0, 0, 0, 0]).unwrap(), Vec::<ChatMessage<'_>>::new());
        let refused = |b: &[u8]| {
            let e = decode_messages(b).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{e}");
            alloc::string::String::from(e.field.as_str())
        };
        assert_eq!(refused(&[]), "messages.n_messages");
        assert_eq!(refused(&bytes[..bytes.len() - 1]), "messages[2].content_len");
        let mut one = encode_messages(&[USER]);
        assert_eq!(refused(&one[..one.len() - 1]), "messages[0].content");
        one.push(0);
        assert_eq!(refused(&one), "messages");
        let mut bad = encode_messages(&[USER]);
        let at = bad.len() - 1;
        bad[at] = 0xFF;
        assert_eq!(refused(&bad), "messages[0].content");
        assert_eq!(refused(&[0xFF, 0xFF, 0xFF, 0xFF]), "messages.n_messages", "a huge count is refused before allocating");
    }
}
