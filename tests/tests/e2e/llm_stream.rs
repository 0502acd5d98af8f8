//! The OpenAI stand-in answers streamed requests (`"stream": true`) with server-sent
//! events word by word, as the LLM client's `chat_stream` reads them, and still answers
//! the same request without `stream` with one chat completion.

use agent_runtime::{
    config::Settings,
    llm::{ChatMessage, LlmClient},
};
use e2e::{LlmStandIn, STANDIN_ANSWER};

#[tokio::test]
async fn the_stand_in_streams_free_text_word_by_word_and_still_answers_unstreamed() {
    let stand_in = LlmStandIn::healthy().await;
    let url = stand_in.base_url();
    let settings = Settings::from_vars([("OPENAI_BASE_URL", url.as_str())]).expect("settings");
    let llm = LlmClient::new(&settings.llm).expect("client");
    let question = [ChatMessage::user("Help me with my project")];

    let mut deltas = Vec::new();
    let streamed = llm
        .chat_stream(&question, 64, |delta| deltas.push(delta.to_owned()))
        .await
        .expect("a streamed answer");
    assert_eq!(streamed.content, STANDIN_ANSWER);
    assert_eq!(
        deltas.len(),
        STANDIN_ANSWER.split_whitespace().count(),
        "one delta per word: {deltas:?}"
    );
    assert_eq!(deltas.concat(), STANDIN_ANSWER);
    assert_eq!(streamed.usage.total_tokens, 15);

    let whole = llm.chat(&question, 64).await.expect("an unstreamed answer");
    assert_eq!(
        (whole.content, whole.usage),
        (streamed.content, streamed.usage)
    );
    assert_eq!(stand_in.calls().await, 2);
}
