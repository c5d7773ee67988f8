%% Evaluated by bench/broker-probe.ts through `rabbitmqctl eval` (RabbitMQ
%% 3.10's quorum queues; @NAME@ placeholders are filled in first). It spawns a
%% process inside the broker that, every @INTERVAL@ ms until @STOP@ exists
%% or @MAX_MS@ ms have passed, asks the quorum queue @QUEUE@ (vhost "/") for
%% its ready messages and, per consumer, its status, deliveries checked out
%% (unsettled) and credit left, and appends one line to @OUT@:
%%   ms_since_epoch reply_us ready consumer...   consumer = status:checked_out:credit
%% then "end". The reply time is how long the queue's own process took to
%% answer: a backlog there shows in it. Read-only: a local query of the
%% state machine, nothing is written to the queue's log.
begin
  Out = "@OUT@",
  Stop = "@STOP@",
  QName = rabbit_misc:r(<<"/">>, queue, <<"@QUEUE@">>),
  Deadline = erlang:monotonic_time(millisecond) + @MAX_MS@,
  Consumers = fun(St) ->
    Maps = [E || E <- tuple_to_list(St), is_map(E), map_size(E) > 0,
                 lists:all(fun(V) -> is_tuple(V) andalso tuple_size(V) >= 6 andalso element(1, V) =:= consumer end, maps:values(E))],
    case Maps of
      [M | _] -> [{element(3, C), map_size(element(5, C)), element(6, C)} || C <- maps:values(M), is_map(element(5, C))];
      [] -> []
    end
  end,
  Query = fun(St) -> {maps:get(num_ready_messages, rabbit_fifo:overview(St), -1), Consumers(St)} end,
  spawn(fun() ->
    file:write_file(Out, <<>>),
    Loop = fun Loop() ->
      case filelib:is_file(Stop) orelse erlang:monotonic_time(millisecond) > Deadline of
        true -> file:write_file(Out, <<"end\n">>, [append]);
        false ->
          Line = case rabbit_amqqueue:lookup(QName) of
            {ok, Q} ->
              T0 = erlang:monotonic_time(microsecond),
              case catch ra:local_query(amqqueue:get_pid(Q), Query, 2000) of
                {ok, {_, {Ready, Cs}}, _} ->
                  Us = erlang:monotonic_time(microsecond) - T0,
                  [integer_to_list(os:system_time(millisecond)), $\s, integer_to_list(Us), $\s, integer_to_list(Ready),
                   [[$\s, atom_to_list(S), $:, integer_to_list(N), $:, integer_to_list(C)] || {S, N, C} <- Cs, is_atom(S), is_integer(C)], $\n];
                _ -> []
              end;
            _ -> []
          end,
          file:write_file(Out, Line, [append]),
          timer:sleep(@INTERVAL@),
          Loop()
      end
    end,
    Loop()
  end),
  ok
end.
