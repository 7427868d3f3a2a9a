#include "model/chat_template.h"

namespace lazyllm_edge {

std::string default_chat_template(const std::string& architecture) {
    if (architecture != "gemma3") return "";
    // Gemma 3's Hugging Face template, text content only.
    return "{{ bos_token }}"
           "{%- if messages[0]['role'] == 'system' -%}"
           "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
           "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
           "{%- for message in loop_messages -%}"
           "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{%- endif -%}"
           "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
           "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
           "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
           "{%- endfor -%}"
           "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}";
}

}  // namespace lazyllm_edge
