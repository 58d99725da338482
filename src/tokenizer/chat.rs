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
const GENERATION_PROMPT: &str = "<|im_start|>assistant\n";
/// What follows `<|im_end|>` before the next turn; the end-of-turn token itself is already in the
/// KV cache when a conversation continues.
const AFTER_END_OF_TURN: &str = "\n";

/// Renders `messages` with `template`. Without [`CHAT_CONTINUE`], `default_system` (if given) is put
/// first when the first message is not a `system` message, as SmolLM2's template does with
/// [`SMOLLM2_DEFAULT_SYSTEM`].
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
    match template {
        ChatTemplate::None => {
            Err(Error::new(Status::InvalidArgument, "tokenizer.chat_template", ChatTemplate::None as u64, "the package names no chat template"))
        }
        // Both families write the same ChatML; they differ only in the default system prompt, which
        // the caller passes (`ChatTemplate::default_system`).
        ChatTemplate::ChatMl | ChatTemplate::ChatMlQwen2 => {
            let system = match messages.first() {
                Some(m) if m.role == "system" => None,
                _ if continuing => None,
                _ => default_system.map(|content| ChatMessage { role: "system", content }),
            };
            let turns = || system.iter().chain(messages);
            let turn_len = |m: &ChatMessage<'_>| IM_START.len() + m.role.len() + 1 + m.content.len() + IM_END.len() + 1;
            let len = turns()
                .map(turn_len)
                .chain(continuing.then_some(AFTER_END_OF_TURN.len()))
                .chain((flags & CHAT_ADD_GENERATION_PROMPT != 0).then_some(GENERATION_PROMPT.len()))
                .try_fold(0usize, usize::checked_add);
            let oom = || Error::new(Status::OutOfMemory, "chat.prompt", len.unwrap_or(usize::MAX) as u64, "allocation failed (bytes requested)");
            let mut out = Vec::new();
            out.try_reserve_exact(len.ok_or_else(oom)?).map_err(|_| oom())?;
            // Within the room reserved above.
            if continuing {
                out.extend_from_slice(AFTER_END_OF_TURN.as_bytes());
            }
            for m in turns() {
                for part in [IM_START, m.role, "\n", m.content, IM_END, "\n"] {
                    out.extend_from_slice(part.as_bytes());
                }
            }
            if flags & CHAT_ADD_GENERATION_PROMPT != 0 {
                out.extend_from_slice(GENERATION_PROMPT.as_bytes());
            }
            debug_assert_eq!(Some(out.len()), len);
            Ok(out)
        }
    }
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
