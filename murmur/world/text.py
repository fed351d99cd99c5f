"""Words for the demo world: topic vocabularies, post templates, names, spam, bots, PII and foreign lines.

Everything the generator in :mod:`murmur.world` writes comes from the tables here, so a test
can check that a post about a topic uses that topic's words, and a small language model trained on
the world has coherent phrases to learn. Topics are written as one readable block each::

    ## football                      topic name (snake_case)
    tags: Football PremierLeague     English hashtags (without '#')
    es_tags: Fútbol LaLiga           Spanish hashtags
    sites: espn.com/soccer           link targets for https://t.co/... URLs
    emoji: ⚽ 🥅                      topic emoji
    en_nouns: the derby | ...        noun phrases that fit "tips on X", "X is underrated"
    en_lines: What a goal | ...      whole sentences, no final punctuation ("{k}" is a number)
        | ...                        an indented line continues the field above
    es_nouns / es_lines              the same in Spanish (nouns carry their article)
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_TOPICS_SRC = """
## football
tags: Football PremierLeague ChampionsLeague Soccer MatchDay
es_tags: Fútbol LaLiga Champions ElClásico
sites: espn.com/soccer bbc.com/sport/football marca.com/futbol
emoji: ⚽ 🥅 🏟️
en_nouns: the derby | the transfer window | our new striker | the Champions League final |
    the offside rule | VAR | the midfield | Sunday's match | the away kit | the league table |
    the youth academy | penalty shootouts
en_lines: What a goal in the last minute | The referee had a shocker tonight |
    We need a proper striker before the window closes | That free kick was pure class |
    Three points and a clean sheet, happy weekend | The pressing in the second half was incredible |
    Our defence looked lost again | Can't believe we drew that game after leading 2-0 |
    The atmosphere at the stadium was electric
es_nouns: el derbi | el mercado de fichajes | el nuevo delantero | la final de la Champions |
    el fuera de juego | el VAR | el centro del campo | el partido del domingo | la segunda equipación |
    la tabla de la liga | la cantera | los penaltis
es_lines: Qué golazo en el último minuto | El árbitro ha tenido una noche horrible |
    Necesitamos un nueve de verdad antes de que cierre el mercado | Ese tiro libre fue pura clase |
    Tres puntos y portería a cero, buen fin de semana | La presión en la segunda parte fue increíble |
    La defensa estuvo perdida otra vez | No me creo que empatáramos después de ir ganando 2-0 |
    El ambiente en el estadio era una locura

## basketball
tags: NBA Basketball NBAPlayoffs Hoops
es_tags: Baloncesto ACB NBA
sites: nba.com/news espn.com/nba acb.com/noticias
emoji: 🏀 ⛹️ 🔥
en_nouns: the playoffs | the three-point line | the trade deadline | our point guard | the rookie class |
    the pick and roll | the MVP race | the draft lottery | zone defense | the bench unit
en_lines: That buzzer beater was unreal | He dropped {k} points and made it look easy |
    The refs let them get away with everything in the paint | Our bench is carrying this team right now |
    Free throws lost us the game again | That crossover broke his ankles |
    The rookie is already playing like an All-Star | Game 7 is going to be insane
es_nouns: los playoffs | el triple | el mercado de traspasos | nuestro base | los novatos |
    el bloqueo y continuación | la carrera por el MVP | el draft | la defensa en zona | el banquillo
es_lines: Esa canasta sobre la bocina fue irreal | Metió {k} puntos como si nada |
    Los árbitros les dejaron hacer de todo en la zona | El banquillo está sosteniendo al equipo |
    Los tiros libres nos hicieron perder otra vez | Ese crossover le rompió los tobillos |
    El novato ya juega como un All-Star | El séptimo partido va a ser una locura

## tennis
tags: Tennis Wimbledon RolandGarros ATP
es_tags: Tenis RolandGarros Wimbledon
sites: atptour.com/news wimbledon.com/news rolandgarros.com
emoji: 🎾 🏆
en_nouns: the clay season | the second serve | the tiebreak | Wimbledon | the Australian Open |
    my backhand | the new racket | the baseline rallies | the final set | doubles
en_lines: That rally lasted forty shots, incredible tennis |
    Five set thrillers are the best thing in sport | My backhand finally clicked at practice today |
    The crowd was on its feet for that passing shot | Losing a tiebreak from 6-2 up hurts |
    Grass season is always too short
es_nouns: la temporada de tierra batida | el segundo saque | el tie-break | Wimbledon |
    el Open de Australia | mi revés | la raqueta nueva | los peloteos desde el fondo | el set definitivo |
    el dobles
es_lines: Ese punto duró cuarenta golpes, tenis increíble |
    Los partidos a cinco sets son lo mejor del deporte | Hoy por fin me salió el revés en el entrenamiento |
    La grada se puso en pie con ese passing | Perder un tie-break yendo 6-2 arriba duele |
    La temporada de hierba siempre se hace corta

## formula1
tags: F1 Formula1 GrandPrix
es_tags: F1 Fórmula1 GP
sites: formula1.com/en/latest autosport.com/f1 motorsport.com/f1
emoji: 🏎️ 🏁
en_nouns: the safety car | the pit strategy | qualifying | the new car upgrades | the championship fight |
    the hard tyres | the first corner | the team radio | the sprint race | Monaco
en_lines: That undercut won them the race | Pit stop in 2.1 seconds, unreal work from the crew |
    Rain in qualifying always makes things chaotic | The championship is going down to the last race |
    Track limits ruined another great lap | That overtake into turn one was brave
es_nouns: el coche de seguridad | la estrategia de boxes | la clasificación | las mejoras del coche |
    la lucha por el campeonato | los neumáticos duros | la primera curva | la radio del equipo |
    la carrera sprint | Mónaco
es_lines: Ese undercut les dio la carrera | Parada en boxes de 2,1 segundos, trabajo brutal del equipo |
    La lluvia en clasificación siempre lo complica todo |
    El campeonato se va a decidir en la última carrera | Los límites de pista arruinaron otra gran vuelta |
    Ese adelantamiento en la primera curva fue valiente

## cooking
tags: Cooking HomeCooking Foodie Recipe
es_tags: Cocina Receta RecetasFáciles
sites: seriouseats.com/recipes bonappetit.com/recipe directoalpaladar.com/recetas
emoji: 🍝 🧄 🍳 👨‍🍳
en_nouns: homemade pasta | cast iron pans | a good chicken stock | garlic butter | the perfect risotto |
    knife skills | slow cooked ragu | weeknight dinners | fresh herbs | the spice drawer
en_lines: Made fresh pasta from scratch and it was worth every minute | The secret is always more garlic |
    Nothing beats a slow Sunday roast | Burned the onions again, starting over |
    Meal prep for the week done in two hours | This ragu has been simmering for six hours
es_nouns: la pasta casera | las sartenes de hierro | un buen caldo de pollo | la mantequilla de ajo |
    el risotto perfecto | la técnica con el cuchillo | el ragú a fuego lento | las cenas entre semana |
    las hierbas frescas | el cajón de las especias
es_lines: Hice pasta fresca desde cero y valió cada minuto | El secreto siempre es más ajo |
    Nada supera una comida lenta de domingo | Se me ha quemado la cebolla otra vez, vuelta a empezar |
    Comida de toda la semana preparada en dos horas | Este ragú lleva seis horas al fuego |
    La tortilla de patatas de mi abuela sigue siendo la mejor

## vegan_food
tags: Vegan PlantBased VeganFood
es_tags: Vegano ComidaVegana PlantBased
sites: minimalistbaker.com/recipes veganuary.com/recipes
emoji: 🌱 🥑 🥗
en_nouns: plant-based protein | tofu scramble | oat milk | vegan cheese | lentil curry |
    the new vegan burger | nutritional yeast | cashew cream | chickpea salad | meatless Mondays
en_lines: This lentil curry converted my whole family | Vegan cheese has come a long way |
    Tofu is only boring if you don't press it | Three months plant-based and feeling great |
    Found a vegan bakery around the corner and I'm in trouble | Chickpeas can do literally anything
es_nouns: la proteína vegetal | el revuelto de tofu | la leche de avena | el queso vegano |
    el curry de lentejas | la nueva hamburguesa vegana | la levadura nutricional | la crema de anacardos |
    la ensalada de garbanzos | los lunes sin carne
es_lines: Este curry de lentejas ha convencido a toda mi familia | El queso vegano ha mejorado muchísimo |
    El tofu solo es aburrido si no lo prensas | Tres meses comiendo vegetal y me siento genial |
    He encontrado una panadería vegana al lado de casa y estoy perdida | Los garbanzos sirven para todo

## baking
tags: Baking Sourdough BreadBaking
es_tags: Repostería MasaMadre PanCasero
sites: kingarthurbaking.com/recipes theperfectloaf.com/guides
emoji: 🍞 🥐 🍪
en_nouns: sourdough bread | my starter | the cinnamon rolls | banana bread | the oven temperature |
    laminated dough | the crumb | chocolate chip cookies | gluten free flour | proofing times
en_lines: My sourdough finally got that open crumb | The starter is alive and bubbling again |
    Cinnamon rolls for breakfast, no regrets | Overproofed the dough again, lesson learned |
    Brown butter makes every cookie better | The kitchen smells like fresh bread right now
es_nouns: el pan de masa madre | mi masa madre | los rollos de canela | el bizcocho de plátano |
    la temperatura del horno | el hojaldre | la miga | las galletas con chocolate | la harina sin gluten |
    los tiempos de fermentación
es_lines: Mi pan de masa madre por fin tiene la miga abierta |
    La masa madre está viva y burbujeando otra vez | Rollos de canela para desayunar, sin arrepentimientos |
    Se me ha pasado la fermentación otra vez, lección aprendida |
    La mantequilla tostada mejora cualquier galleta | La cocina huele a pan recién hecho

## coffee
tags: Coffee CoffeeTime Espresso
es_tags: Café CaféDeEspecialidad
sites: sprudge.com/news perfectdailygrind.com/articles
emoji: ☕ 🫘
en_nouns: pour over coffee | the new espresso machine | cold brew | single origin beans | latte art |
    my burr grinder | the morning flat white | oat milk lattes | the local roastery | decaf
en_lines: First coffee of the day hits different | Dialed in the grinder and the espresso is finally sweet |
    Cold brew season is officially open | My latte art still looks like a potato |
    Nothing works before my second cup | This Ethiopian roast tastes like blueberries
es_nouns: el café de filtro | la nueva cafetera espresso | el cold brew | los granos de origen único |
    el latte art | mi molinillo | el café con leche de la mañana | los lattes con avena |
    el tostador del barrio | el descafeinado
es_lines: El primer café del día sienta diferente |
    He ajustado el molinillo y por fin el espresso sale dulce |
    Empieza oficialmente la temporada de café frío | Mi latte art sigue pareciendo una patata |
    Nada funciona antes del segundo café | Este tueste etíope sabe a arándanos

## travel
tags: Travel Wanderlust TravelTips
es_tags: Viajes Viajar Mochilero
sites: lonelyplanet.com/articles cntraveler.com/story viajes.nationalgeographic.com.es
emoji: ✈️ 🌍 🧳
en_nouns: cheap flights | the night train | carry-on only travel | the old town | travel insurance |
    jet lag | hostels in Lisbon | the Japan rail pass | hidden beaches | a long layover
en_lines: Booked a last minute flight and zero regrets | Jet lag is winning this round |
    The old town at sunset was unreal | Packing carry-on only for two weeks, wish me luck |
    Missed the train but found the best little cafe | Every trip teaches me to pack less
es_nouns: los vuelos baratos | el tren nocturno | viajar solo con equipaje de mano | el casco antiguo |
    el seguro de viaje | el jet lag | los albergues de Lisboa | el pase de tren de Japón |
    las playas escondidas | una escala larga
es_lines: Reservé un vuelo de última hora y cero arrepentimientos | El jet lag me está ganando esta vez |
    El casco antiguo al atardecer era irreal | Dos semanas solo con equipaje de mano, deseadme suerte |
    Perdí el tren pero encontré la mejor cafetería | Cada viaje me enseña a llevar menos cosas

## hiking
tags: Hiking Outdoors Mountains
es_tags: Senderismo Montaña
sites: alltrails.com/trail outsideonline.com/adventure
emoji: 🥾 ⛰️ 🏕️
en_nouns: the summit | trail running shoes | the ridge trail | a wild camping spot | the mountain hut |
    trekking poles | the sunrise hike | the national park | waterproof boots | the map and compass
en_lines: Made it to the summit just before the clouds rolled in | Twenty kilometers and my legs are done |
    The view from the ridge was worth every step | Sunrise from the mountain hut, no words |
    Got caught in the rain but still smiling | Always pack more water than you think
es_nouns: la cumbre | las zapatillas de trail | la ruta por la cresta | un sitio para acampar |
    el refugio de montaña | los bastones | la ruta al amanecer | el parque nacional |
    las botas impermeables | el mapa y la brújula
es_lines: Llegamos a la cumbre justo antes de que entraran las nubes |
    Veinte kilómetros y tengo las piernas muertas | Las vistas desde la cresta merecían cada paso |
    Amanecer desde el refugio, sin palabras | Nos pilló la lluvia pero seguimos sonriendo |
    Lleva siempre más agua de la que crees

## crypto
tags: Bitcoin Crypto Ethereum Web3 BTC
es_tags: Bitcoin Cripto Criptomonedas
sites: coindesk.com/markets theblock.co/post decrypt.co/news
emoji: ₿ 🚀 📉 📈
en_nouns: the bitcoin halving | cold wallets | the ETF flows | gas fees | layer two networks |
    the bear market | DeFi yields | stablecoins | the next altcoin season | self custody
en_lines: Not your keys, not your coins | The halving is priced in, or is it |
    Gas fees are eating all my gains | Moved everything to a cold wallet this weekend |
    Volatility is the price of admission | Zoom out, the chart looks fine
es_nouns: el halving de bitcoin | las carteras frías | los flujos de los ETF | las comisiones de gas |
    las redes de capa dos | el mercado bajista | los rendimientos DeFi | las stablecoins |
    la próxima temporada de altcoins | la autocustodia
es_lines: Si no son tus claves, no son tus monedas | El halving ya está descontado, o no |
    Las comisiones se comen todas mis ganancias | Este finde lo he pasado todo a una cartera fría |
    La volatilidad es el precio de entrada | Aleja el zoom, el gráfico está bien

## stock_market
tags: StockMarket Investing Stocks SP500
es_tags: Bolsa Inversión Ibex35
sites: reuters.com/markets bloomberg.com/markets expansion.com/mercados
emoji: 📈 📉 💵
en_nouns: index funds | the earnings season | the Fed decision | dividend stocks | the S&P 500 |
    my retirement account | the bond market | tech stocks | dollar cost averaging | the jobs report
en_lines: Markets opened red and my coffee got cold | Another earnings beat and the stock still dropped |
    Time in the market beats timing the market | Bought the dip, then it dipped again |
    The Fed meeting is all anyone can talk about | Rebalanced the portfolio, boring is good |
    $NVDA earnings tonight, buckle up | Still holding $AAPL and $MSFT for the long run
es_nouns: los fondos indexados | la temporada de resultados | la decisión de la Fed |
    las acciones con dividendo | el S&P 500 | mi plan de pensiones | el mercado de bonos |
    las tecnológicas | las aportaciones periódicas | el dato de empleo
es_lines: La bolsa abrió en rojo y se me enfrió el café |
    Otros resultados mejores de lo esperado y la acción cae igual |
    El tiempo en el mercado gana a intentar adivinarlo | Compré en la caída y luego cayó más |
    Todo el mundo habla de la reunión de la Fed | He rebalanceado la cartera, lo aburrido funciona |
    Resultados de $NVDA esta noche, agarraos | Sigo con $AAPL y $MSFT a largo plazo

## ai_ml
tags: MachineLearning AI DeepLearning LLM DataScience
es_tags: InteligenciaArtificial IA MachineLearning
sites: arxiv.org/abs huggingface.co/blog paperswithcode.com/paper
emoji: 🤖 🧠 📊
en_nouns: transformer models | the training loss | fine-tuning | the new open weights model |
    gradient descent | attention heads | the evaluation benchmark | synthetic data | GPU memory |
    tokenizers
en_lines: The loss curve finally went down after fixing the learning rate |
    Spent all day debugging a shape mismatch in the attention layer |
    Small models trained on good data punch way above their weight |
    Evaluation is harder than training and nobody talks about it | My GPU has been at 100% for three days |
    Read the paper twice and I still don't get the ablations
es_nouns: los modelos transformer | la pérdida de entrenamiento | el ajuste fino | el nuevo modelo abierto |
    el descenso de gradiente | las cabezas de atención | el benchmark de evaluación | los datos sintéticos |
    la memoria de la GPU | los tokenizadores
es_lines: La curva de pérdida por fin bajó después de ajustar la tasa de aprendizaje |
    Todo el día depurando un error de dimensiones en la atención |
    Los modelos pequeños con buenos datos rinden muchísimo |
    Evaluar es más difícil que entrenar y nadie habla de ello | Mi GPU lleva tres días al 100% |
    Me he leído el paper dos veces y sigo sin entender las ablaciones

## programming
tags: Programming Python JavaScript DevLife CodeNewbie
es_tags: Programación Python DesarrolloWeb
sites: github.com/blog dev.to/posts news.ycombinator.com/item
emoji: 💻 🐛 ⌨️
en_nouns: type hints | the legacy codebase | code reviews | unit tests | the new framework |
    merge conflicts | Rust | dependency updates | the production database | technical debt
en_lines: It works on my machine, ship it | Deleted 500 lines of code today and everything still passes |
    Naming things is still the hardest problem | Friday deploys are a lifestyle choice |
    Spent two hours on a bug that was a missing comma | Writing the tests first actually saved me today
es_nouns: las anotaciones de tipos | el código heredado | las revisiones de código | los tests unitarios |
    el nuevo framework | los conflictos de merge | Rust | la actualización de dependencias |
    la base de datos de producción | la deuda técnica
es_lines: En mi máquina funciona, a producción | Hoy he borrado 500 líneas y todo sigue pasando |
    Poner nombres sigue siendo lo más difícil | Desplegar un viernes es un estilo de vida |
    Dos horas con un bug que era una coma | Escribir los tests primero hoy me ha salvado

## startups
tags: Startups Founders VentureCapital SaaS
es_tags: Emprendimiento Startups
sites: techcrunch.com/startups ycombinator.com/library
emoji: 🚀 💡 📈
en_nouns: product market fit | the seed round | cold emails | the pitch deck | churn |
    the first hundred customers | remote hiring | runway | the MVP | pricing pages
en_lines: We just closed our seed round, time to build | Talk to your users before writing any code |
    Our churn dropped after we fixed onboarding | Ten investor meetings, ten different opinions |
    Shipping fast beats shipping perfect | First paying customer today, what a feeling
es_nouns: el encaje producto mercado | la ronda semilla | los correos en frío | el pitch deck |
    la tasa de abandono | los primeros cien clientes | la contratación en remoto | la caja disponible |
    el producto mínimo viable | la página de precios
es_lines: Acabamos de cerrar la ronda semilla, a construir |
    Habla con tus usuarios antes de escribir código | El abandono bajó cuando arreglamos el onboarding |
    Diez reuniones con inversores, diez opiniones distintas | Lanzar rápido gana a lanzar perfecto |
    Hoy tenemos el primer cliente que paga, qué sensación

## gaming
tags: Gaming PS5 NintendoSwitch IndieGames Esports
es_tags: Videojuegos Gaming
sites: ign.com/articles polygon.com/reviews vandal.elespanol.com/noticia
emoji: 🎮 👾 🕹️
en_nouns: the new patch | the final boss | cozy games | the battle pass | the speedrun |
    the open world map | couch co-op | the ranked ladder | indie games | the sequel trailer
en_lines: Finally beat the final boss after forty tries | The new patch completely broke my build |
    One more run turned into four hours | This indie game deserves way more attention |
    Ranked is making me question my life choices | The soundtrack alone is worth the price
es_nouns: el nuevo parche | el jefe final | los juegos tranquilos | el pase de batalla | el speedrun |
    el mapa del mundo abierto | el cooperativo en sofá | las partidas clasificatorias | los juegos indie |
    el tráiler de la secuela
es_lines: Por fin me pasé el jefe final después de cuarenta intentos | El nuevo parche me ha roto la build |
    Una partida más se convirtió en cuatro horas | Este juego indie merece mucha más atención |
    Las clasificatorias me hacen replantearme la vida | Solo la banda sonora ya vale lo que cuesta

## movies
tags: Movies Film Cinema Oscars
es_tags: Cine Películas
sites: letterboxd.com/film variety.com/news fotogramas.es/noticias
emoji: 🎬 🍿 🎥
en_nouns: the director's cut | the opening weekend | practical effects | the sequel | the film score |
    the plot twist | indie cinema | the award season | the trailer | the cinematography
en_lines: That ending left the whole theater silent | The trailer spoiled half the movie |
    Practical effects still look better than CGI | Three hours long and I wasn't bored once |
    The score gave me chills | Rewatched it and caught so many details
es_nouns: el montaje del director | el fin de semana de estreno | los efectos prácticos | la secuela |
    la banda sonora | el giro de guion | el cine independiente | la temporada de premios | el tráiler |
    la fotografía
es_lines: Ese final dejó a toda la sala en silencio | El tráiler destripaba media película |
    Los efectos prácticos siguen luciendo mejor que el CGI | Tres horas y no me aburrí ni un momento |
    La banda sonora me puso la piel de gallina | La volví a ver y pillé un montón de detalles

## tv_series
tags: TVSeries Netflix BingeWatching
es_tags: Series Netflix
sites: tvline.com/news hollywoodreporter.com/tv espinof.com/series
emoji: 📺 🛋️ 😱
en_nouns: the season finale | the new episode | the pilot | the writers' room | the spin-off |
    the cliffhanger | the main cast | the streaming price | the last season | the opening credits
en_lines: I said one episode and watched the whole season | That cliffhanger is criminal |
    The last season ruined everything for me | No spoilers please, I'm two episodes behind |
    The pilot was slow but it gets so good | Waiting a week for each episode is torture
es_nouns: el final de temporada | el nuevo capítulo | el piloto | la sala de guionistas | el spin-off |
    el cliffhanger | el reparto principal | el precio del streaming | la última temporada | la cabecera
es_lines: Dije un capítulo y me vi la temporada entera | Ese final de capítulo es un crimen |
    La última temporada me lo arruinó todo | Nada de spoilers, voy dos capítulos por detrás |
    El piloto es lento pero luego mejora muchísimo | Esperar una semana por capítulo es una tortura

## music
tags: Music NewMusic NowPlaying Vinyl
es_tags: Música Concierto NuevaMúsica
sites: pitchfork.com/reviews rollingstone.com/music open.spotify.com/album
emoji: 🎵 🎸 🎧
en_nouns: the new album | vinyl records | the live show | the guitar solo | the festival lineup |
    my playlist | the opening act | the acoustic version | concert tickets | the bass line
en_lines: This album has been on repeat all week | The live version is even better than the studio one |
    Festival lineup just dropped and I need tickets | That bass line lives in my head rent free |
    Saw them live last night and my ears are still ringing | Found an old vinyl shop with amazing records
es_nouns: el nuevo disco | los vinilos | el directo | el solo de guitarra | el cartel del festival |
    mi lista de reproducción | el telonero | la versión acústica | las entradas del concierto |
    la línea de bajo
es_lines: Este disco lleva toda la semana sonando en bucle |
    El directo es todavía mejor que la versión de estudio |
    Ha salido el cartel del festival y necesito entradas | Esa línea de bajo vive en mi cabeza |
    Ayer los vi en directo y todavía me pitan los oídos | He encontrado una tienda de vinilos con joyas

## books
tags: Books Reading BookTok AmReading
es_tags: Libros Lectura
sites: goodreads.com/book theguardian.com/books elcultural.com/letras
emoji: 📚 📖
en_nouns: the new novel | my reading list | the book club | audiobooks | the library | the final chapter |
    the paperback edition | fantasy series | the author interview | the sequel
en_lines: Stayed up until 3am to finish this book | The book was better than the movie, as always |
    Book club picked a 900 page novel, wish me luck | Audiobooks have saved my commute |
    That final chapter wrecked me | Bought three new books before finishing the last one
es_nouns: la nueva novela | mi lista de lecturas | el club de lectura | los audiolibros | la biblioteca |
    el último capítulo | la edición de bolsillo | la saga de fantasía | la entrevista al autor |
    la segunda parte
es_lines: Me quedé hasta las 3 para terminar este libro | El libro era mejor que la película, como siempre |
    El club de lectura eligió una novela de 900 páginas, deseadme suerte |
    Los audiolibros me han salvado los trayectos | Ese último capítulo me destrozó |
    Compré tres libros más sin terminar el anterior

## fitness
tags: Fitness GymLife Workout
es_tags: Gimnasio Entrenamiento Fitness
sites: menshealth.com/fitness womenshealthmag.com/fitness
emoji: 💪 🏋️ 🔥
en_nouns: leg day | progressive overload | the deadlift | protein shakes | the morning workout | rest days |
    the squat rack | my training plan | mobility work | the personal record
en_lines: New deadlift personal record today | Never skip leg day, my stairs hate me |
    Rest days are part of the plan | Consistency beats motivation every time |
    The gym at 6am is a different world | Finally hit a bodyweight bench press
es_nouns: el día de pierna | la sobrecarga progresiva | el peso muerto | los batidos de proteína |
    el entreno de la mañana | los días de descanso | el rack de sentadillas | mi plan de entrenamiento |
    el trabajo de movilidad | la marca personal
es_lines: Nueva marca personal en peso muerto | Nunca te saltes el día de pierna, mis escaleras me odian |
    Descansar también es parte del plan | La constancia gana a la motivación siempre |
    El gimnasio a las 6 de la mañana es otro mundo | Por fin levanto mi peso en press de banca

## running
tags: Running Marathon RunnersOfTwitter
es_tags: Running Correr Maratón
sites: runnersworld.com/training strava.com/activities
emoji: 🏃 👟 ⏱️
en_nouns: the marathon training plan | long runs | the new running shoes | interval sessions |
    the half marathon | my pace | race day | the running club | recovery runs | the finish line
en_lines: Ran {k} km this morning before work | Long run done, legs are jelly |
    New personal best at the half marathon | Rain doesn't stop the running club |
    Intervals today almost broke me | Race day nerves are kicking in
es_nouns: el plan para el maratón | las tiradas largas | las zapatillas nuevas | las series |
    la media maratón | mi ritmo | el día de la carrera | el club de running | los rodajes suaves |
    la línea de meta
es_lines: Hoy {k} km antes de trabajar | Tirada larga hecha, tengo las piernas de gelatina |
    Nueva marca personal en la media maratón | La lluvia no para al club de running |
    Las series de hoy casi acaban conmigo | Ya empiezan los nervios del día de carrera

## cycling
tags: Cycling BikeLife TourDeFrance
es_tags: Ciclismo Bici
sites: cyclingnews.com/news bikeradar.com/advice
emoji: 🚴 🚲
en_nouns: the climb | bike lanes | the gravel bike | the group ride | the Tour de France |
    the new carbon wheels | bike commuting | the headwind | clipless pedals | the mountain stage
en_lines: Climbed the hill without stopping for the first time | Headwind both ways somehow |
    The group ride was fast today | Bike commuting is the best part of my day |
    That mountain stage was pure drama | Another flat tire, third this week
es_nouns: el puerto | los carriles bici | la bici de gravel | la salida en grupo | el Tour de Francia |
    las ruedas de carbono | ir al trabajo en bici | el viento de cara | los pedales automáticos |
    la etapa de montaña
es_lines: Subí el puerto sin parar por primera vez | Viento de cara a la ida y a la vuelta, no sé cómo |
    La salida en grupo fue rapidísima hoy | Ir en bici al trabajo es lo mejor del día |
    Esa etapa de montaña fue puro drama | Otro pinchazo, el tercero esta semana

## yoga
tags: Yoga Mindfulness Meditation
es_tags: Yoga Meditación
sites: yogajournal.com/practice mindful.org/meditation
emoji: 🧘 🕉️ 🌿
en_nouns: morning yoga | the headstand | breathing exercises | meditation apps | the yoga retreat |
    hip openers | the sun salutation | a quiet mind | hot yoga | the downward dog
en_lines: Twenty minutes of yoga and the whole day feels different |
    Finally held a headstand for ten breaths | Meditation is harder than it looks |
    Slow mornings and stretching, that's the plan | Breathing exercises got me through a stressful day
es_nouns: el yoga por la mañana | la postura sobre la cabeza | los ejercicios de respiración |
    las apps de meditación | el retiro de yoga | las aperturas de cadera | el saludo al sol |
    una mente tranquila | el yoga caliente | el perro boca abajo
es_lines: Veinte minutos de yoga y el día se siente distinto |
    Por fin aguanté diez respiraciones sobre la cabeza | Meditar es más difícil de lo que parece |
    Mañanas lentas y estiramientos, ese es el plan |
    Los ejercicios de respiración me salvaron un día estresante

## parenting
tags: Parenting MomLife DadLife Toddler
es_tags: Maternidad Paternidad Crianza
sites: parents.com/parenting todopapas.com/ninos
emoji: 👶 🍼 😴
en_nouns: bedtime routines | the toddler tantrums | school pickups | screen time | sleep training |
    the first day of school | packed lunches | the teething phase | family dinners | homework help
en_lines: The toddler is awake at 5am again | Bedtime took two hours and three stories |
    My kid asked why the sky is blue for the tenth time today |
    First day of school and I cried more than they did | Packed lunches every day is a full time job |
    Sleep is a distant memory
es_nouns: la rutina de dormir | las rabietas | la salida del cole | el tiempo de pantalla |
    el entrenamiento del sueño | el primer día de cole | las fiambreras | los dientes de leche |
    las cenas en familia | los deberes
es_lines: El peque despierto a las 5 otra vez | Acostarlo llevó dos horas y tres cuentos |
    Mi hija me ha preguntado por qué el cielo es azul diez veces hoy |
    Primer día de cole y lloré yo más que ella |
    Preparar fiambreras cada día es un trabajo a jornada completa | Dormir es un recuerdo lejano

## pets
tags: DogsOfTwitter CatsOfTwitter Pets AdoptDontShop
es_tags: Perros Gatos Mascotas
sites: akc.org/expert-advice thesprucepets.com/pets
emoji: 🐶 🐱 🐾
en_nouns: the dog park | the rescue puppy | cat food | the vet visit | the new leash | the kitten |
    walkies | the scratching post | dog training | the cat tree
en_lines: My dog thinks every walk is the best day of his life |
    The cat knocked my coffee off the table again | Adopted a rescue puppy and my heart is full |
    The vet says he needs to lose weight, no more treats | She sleeps 18 hours a day and still looks tired |
    Someone is very proud of the stick he found
es_nouns: el parque para perros | el cachorro adoptado | el pienso del gato | la visita al veterinario |
    la correa nueva | el gatito | el paseo | el rascador | el adiestramiento | el árbol para gatos
es_lines: Mi perro cree que cada paseo es el mejor día de su vida |
    La gata ha tirado mi café de la mesa otra vez | Adoptamos un cachorro y tengo el corazón lleno |
    El veterinario dice que tiene que adelgazar, se acabaron los premios |
    Duerme 18 horas al día y sigue pareciendo cansada |
    Alguien está muy orgulloso del palo que ha encontrado

## gardening
tags: Gardening GrowYourOwn Houseplants
es_tags: Jardinería Huerto Plantas
sites: rhs.org.uk/advice gardenersworld.com/how-to
emoji: 🌱 🍅 🌻
en_nouns: the tomato plants | raised beds | compost | houseplants | the vegetable patch | seed starting |
    the monstera | the first harvest | slugs | the balcony garden
en_lines: First tomato of the season and it tastes like summer | The slugs ate all my lettuce overnight |
    Repotted the monstera and it already looks happier | Compost is basically magic |
    The balcony garden is finally blooming | Planted garlic today, see you in spring
es_nouns: las tomateras | los bancales | el compost | las plantas de interior | el huerto | los semilleros |
    la monstera | la primera cosecha | las babosas | el jardín del balcón
es_lines: El primer tomate de la temporada sabe a verano |
    Las babosas se comieron toda la lechuga en una noche | Trasplanté la monstera y ya se ve más feliz |
    El compost es básicamente magia | El balcón por fin está en flor |
    Hoy planté ajos, nos vemos en primavera

## fashion
tags: Fashion OOTD Style
es_tags: Moda Estilo
sites: vogue.com/fashion elle.com/es/moda
emoji: 👗 👟 🧥
en_nouns: the capsule wardrobe | vintage jackets | thrift shopping | the new sneakers | fast fashion |
    the spring collection | oversized blazers | the runway shows | linen shirts | the perfect jeans
en_lines: Found a vintage leather jacket for ten dollars |
    Capsule wardrobe means I still have nothing to wear | Thrift shopping is my cardio |
    These sneakers go with everything | The spring collection looks like the nineties again |
    Linen season is the best season
es_nouns: el armario cápsula | las chaquetas vintage | la ropa de segunda mano | las zapatillas nuevas |
    la moda rápida | la colección de primavera | las americanas oversize | los desfiles |
    las camisas de lino | los vaqueros perfectos
es_lines: Encontré una chaqueta de cuero vintage por diez euros |
    Armario cápsula y sigo sin tener nada que ponerme | Ir de tiendas de segunda mano es mi cardio |
    Estas zapatillas combinan con todo | La colección de primavera parece de los noventa otra vez |
    La temporada del lino es la mejor

## photography
tags: Photography PhotoOfTheDay StreetPhotography
es_tags: Fotografía FotoDelDía
sites: petapixel.com/news dpreview.com/articles
emoji: 📷 🌅 🎞️
en_nouns: golden hour | the new lens | street photography | film cameras | long exposures | the photo walk |
    editing presets | the tripod | portrait lighting | the raw files
en_lines: Golden hour did all the work today | Shot a whole roll of film and only two came out |
    The new lens is incredibly sharp | Long exposure at the beach turned out great |
    Editing takes longer than shooting | Street photography is mostly waiting
es_nouns: la hora dorada | el objetivo nuevo | la fotografía callejera | las cámaras de carrete |
    las largas exposiciones | la quedada fotográfica | los presets de edición | el trípode |
    la iluminación de retrato | los archivos RAW
es_lines: La hora dorada hizo todo el trabajo hoy | Gasté un carrete entero y solo salieron dos fotos |
    El objetivo nuevo es nitidísimo | La larga exposición en la playa salió genial |
    Editar lleva más tiempo que disparar | La fotografía callejera es sobre todo esperar

## politics
tags: Politics Election Vote Democracy
es_tags: Política Elecciones
sites: apnews.com/politics politico.com/news elpais.com/politica
emoji: 🗳️ 🏛️
en_nouns: the election debate | the new housing bill | the city council | voter turnout | the budget vote |
    campaign promises | the polls | local elections | the public transport plan | the tax reform
en_lines: The debate last night answered none of the real questions | Go vote, it takes ten minutes |
    Local elections matter more than people think | The city council finally approved the bike lanes |
    Every campaign promises lower rents and nothing changes |
    Read the actual bill before sharing hot takes
es_nouns: el debate electoral | la nueva ley de vivienda | el ayuntamiento | la participación |
    la votación de los presupuestos | las promesas de campaña | las encuestas | las elecciones municipales |
    el plan de transporte público | la reforma fiscal
es_lines: El debate de anoche no respondió ninguna pregunta real | Id a votar, son diez minutos |
    Las elecciones municipales importan más de lo que parece |
    El ayuntamiento por fin aprobó los carriles bici |
    Todas las campañas prometen alquileres más bajos y nada cambia |
    Leed la ley antes de compartir opiniones

## climate
tags: Climate ClimateChange Sustainability RenewableEnergy
es_tags: CambioClimático Sostenibilidad
sites: carbonbrief.org/analysis insideclimatenews.org/news
emoji: 🌍 ☀️ 🌡️
en_nouns: the heat wave | solar panels | electric buses | the carbon footprint | the climate report |
    heat pumps | recycling | the drought | wind farms | plastic waste
en_lines: Another record heat wave and it's only May | Installed solar panels and the first bill was tiny |
    Heat pumps are the boring hero of the energy transition | The new climate report is sobering reading |
    Our city finally switched to electric buses | Bring your own bag, it adds up
es_nouns: la ola de calor | las placas solares | los autobuses eléctricos | la huella de carbono |
    el informe del clima | las bombas de calor | el reciclaje | la sequía | los parques eólicos |
    los residuos plásticos
es_lines: Otra ola de calor récord y solo estamos en mayo |
    Pusimos placas solares y la primera factura fue ridícula |
    Las bombas de calor son las heroínas discretas de la transición |
    El nuevo informe del clima da que pensar | Nuestra ciudad por fin tiene autobuses eléctricos |
    Lleva tu propia bolsa, todo suma

## space
tags: Space NASA Astronomy SpaceX
es_tags: Espacio Astronomía
sites: nasa.gov/news space.com/news
emoji: 🚀 🌌 🔭 🌕
en_nouns: the rocket launch | the Mars rover | the space telescope | the meteor shower | the full moon |
    the space station | exoplanets | the solar eclipse | reusable rockets | the night sky
en_lines: Watched the launch live and still got goosebumps | The new telescope images are breathtaking |
    Meteor shower tonight, clear skies please | The booster landed perfectly again |
    Saw the space station pass over the city | Every exoplanet discovery makes the universe feel bigger
es_nouns: el lanzamiento del cohete | el rover de Marte | el telescopio espacial | la lluvia de estrellas |
    la luna llena | la estación espacial | los exoplanetas | el eclipse solar | los cohetes reutilizables |
    el cielo nocturno
es_lines: Vi el lanzamiento en directo y aún se me pone la piel de gallina |
    Las nuevas imágenes del telescopio son impresionantes |
    Lluvia de estrellas esta noche, que esté despejado por favor | El propulsor aterrizó perfecto otra vez |
    Vi pasar la estación espacial sobre la ciudad | Cada exoplaneta nuevo hace el universo más grande

## cars
tags: Cars CarLife EV
es_tags: Coches Motor
sites: caranddriver.com/reviews topgear.com/car-news motorpasion.com/coches
emoji: 🚗 ⚡ 🔧
en_nouns: electric cars | the manual gearbox | the road trip | charging stations | the new hatchback |
    classic cars | the car wash | winter tires | the test drive | fuel prices
en_lines: Test drove an electric car and I'm sold | Nothing beats a manual on a mountain road |
    Charging stations are still too hard to find | Spent Sunday washing the car and it rained Monday |
    Classic car show downtown this weekend | Fuel prices are getting ridiculous
es_nouns: los coches eléctricos | el cambio manual | el viaje por carretera | los puntos de carga |
    el nuevo compacto | los coches clásicos | el lavado del coche | los neumáticos de invierno |
    la prueba de conducción | el precio de la gasolina
es_lines: Probé un coche eléctrico y me ha convencido | Nada como un manual en una carretera de montaña |
    Sigue siendo difícil encontrar puntos de carga | Lavé el coche el domingo y el lunes llovió |
    Este fin de semana hay concentración de coches clásicos | El precio de la gasolina es ya ridículo

## real_estate
tags: RealEstate Housing FirstHome
es_tags: Vivienda Inmobiliaria Alquiler
sites: zillow.com/research idealista.com/news
emoji: 🏠 🔑
en_nouns: mortgage rates | the first home | rent prices | the open house | the down payment |
    home inspections | the housing market | the landlord | the new apartment | interest rates
en_lines: Rent went up again and the apartment still has no heating |
    Mortgage rates are making everyone wait | Got the keys to our first home today |
    Went to an open house with forty other people | Saving for a down payment feels impossible |
    The housing market makes no sense right now
es_nouns: el tipo de la hipoteca | la primera vivienda | el precio del alquiler |
    la jornada de puertas abiertas | la entrada del piso | la tasación | el mercado inmobiliario |
    el casero | el piso nuevo | los tipos de interés
es_lines: Me han vuelto a subir el alquiler y el piso sigue sin calefacción |
    Los tipos de la hipoteca tienen a todo el mundo esperando |
    Hoy nos han dado las llaves de nuestra primera casa | Fui a ver un piso con otras cuarenta personas |
    Ahorrar para la entrada parece imposible | El mercado inmobiliario no tiene ningún sentido ahora mismo

## weddings
tags: Wedding WeddingPlanning
es_tags: Boda Bodas
sites: theknot.com/content bodas.net/articulos
emoji: 💍 💐 🥂
en_nouns: the wedding venue | the guest list | the first dance | wedding dresses | the seating plan |
    the wedding cake | the bachelor party | the vows | the photographer | the honeymoon
en_lines: Found the perfect wedding venue and it's by the sea |
    The guest list is the hardest part of planning | Practiced our first dance and stepped on every toe |
    Cake tasting was the best day of wedding planning | Three weddings this summer and my wallet is crying |
    Wrote my vows and cried twice
es_nouns: la finca de la boda | la lista de invitados | el primer baile | los vestidos de novia |
    la distribución de las mesas | la tarta nupcial | la despedida de soltero | los votos | el fotógrafo |
    la luna de miel
es_lines: Encontramos la finca perfecta y está junto al mar | La lista de invitados es lo más difícil |
    Ensayamos el primer baile y pisé todos los pies |
    La prueba de la tarta fue el mejor día de la organización |
    Tres bodas este verano y mi cartera llorando | Escribí mis votos y lloré dos veces

## anime
tags: Anime Manga Otaku
es_tags: Anime Manga
sites: myanimelist.net/news crunchyroll.com/news
emoji: 🍥 ⚔️ ✨
en_nouns: the new season | the manga chapter | the opening song | the final arc | the studio animation |
    the dub | the light novel | the filler episodes | the fight scene | cosplay
en_lines: That fight scene animation was insane | The manga chapter this week broke me |
    Skipping the opening is a crime with this song | The final arc is going to be legendary |
    Dub or sub, the eternal debate | Finished the series in three days
es_nouns: la nueva temporada | el capítulo del manga | el opening | el arco final |
    la animación del estudio | el doblaje | la novela ligera | los capítulos de relleno |
    la escena de pelea | el cosplay
es_lines: La animación de esa pelea fue una locura | El capítulo del manga de esta semana me destrozó |
    Saltarse el opening con esta canción es un crimen | El arco final va a ser legendario |
    Doblaje o subtítulos, el eterno debate | Me terminé la serie en tres días

## diy
tags: DIY HomeImprovement Woodworking
es_tags: Bricolaje Reformas
sites: thisoldhouse.com/how-to familyhandyman.com/project
emoji: 🔨 🪚 🛠️
en_nouns: the kitchen renovation | the power drill | woodworking | the paint colors | the bathroom tiles |
    the new shelves | the garage workshop | flat pack furniture | wall anchors | the weekend project
en_lines: Built my first bookshelf and it's only slightly crooked |
    Painting the living room took three coats | The kitchen renovation is two months behind |
    Measure twice, cut once, still cut wrong | Assembled the wardrobe with two screws left over |
    Weekend project done and nobody got hurt
es_nouns: la reforma de la cocina | el taladro | la carpintería | los colores de pintura |
    los azulejos del baño | las estanterías nuevas | el taller del garaje | los muebles para montar |
    los tacos de pared | el proyecto del finde
es_lines: He construido mi primera estantería y solo está un poco torcida |
    Pintar el salón necesitó tres manos | La reforma de la cocina va dos meses tarde |
    Mide dos veces, corta una, y aun así corté mal | Monté el armario y sobraron dos tornillos |
    Proyecto del finde terminado y sin heridos
"""


@dataclass(frozen=True)
class Topic:
    """One topic's vocabulary in English and Spanish."""

    name: str
    tags: dict[str, tuple[str, ...]]   # lang -> hashtags without '#'
    nouns: dict[str, tuple[str, ...]]  # lang -> noun phrases
    lines: dict[str, tuple[str, ...]]  # lang -> sentences without final punctuation
    sites: tuple[str, ...]             # "domain/section" for link targets
    emoji: tuple[str, ...]

    def terms(self, lang: str) -> tuple[str, ...]:
        """Every phrase a post about this topic in ``lang`` is built from (nouns, lines, hashtags)."""
        return self.nouns[lang] + self.lines[lang] + tuple("#" + t for t in self.tags[lang])


def _split(value: str, sep: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(sep) if p.strip())


def _parse_topics(src: str) -> dict[str, Topic]:
    topics: dict[str, Topic] = {}
    for block in src.split("## ")[1:]:
        name, *rows = block.strip().split("\n")
        fields: dict[str, str] = {}
        key = ""
        for row in rows:
            if row.startswith("    "):  # a continuation of the previous field
                fields[key] += " " + row.strip()
                continue
            key, _, value = row.partition(":")
            key = key.strip()
            fields[key] = value.strip()
        topics[name.strip()] = Topic(
            name=name.strip(),
            tags={"en": _split(fields["tags"], " "), "es": _split(fields["es_tags"], " ")},
            nouns={"en": _split(fields["en_nouns"], "|"), "es": _split(fields["es_nouns"], "|")},
            lines={"en": _split(fields["en_lines"], "|"), "es": _split(fields["es_lines"], "|")},
            sites=_split(fields["sites"], " "),
            emoji=_split(fields["emoji"], " "),
        )
    return topics


TOPICS: dict[str, Topic] = _parse_topics(_TOPICS_SRC)
TOPIC_NAMES: tuple[str, ...] = tuple(TOPICS)

# --------------------------------------------------------------------------- post templates
# A post is composed from independent parts, so that two people rarely write the same words:
# an optional opener, a core sentence (TEMPLATES), an optional second sentence about another noun
# of the topic (SECONDS), an optional personal detail (CONTEXTS: who, where, when) and an optional
# closer. Slots: {L} a topic line as written, {l} the same with a lower-case first letter, {N}/{n} a
# topic noun (capitalised / as written), {N2}/{n2} another noun, {L2} another line, {r} a reaction,
# {o} a reply opener, {m} an @mention of someone the author follows, {u} a https://t.co link, {k} a
# small number, {who}/{where}/{when}/{city} a personal detail (capitalised: {Who}, ...), {pn} a noun
# of the post a reply answers ({Pn} capitalised).
TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": (
        "{L}.", "{L}!", "{L}. {r}", "{L}. {r}!", "Honestly, {l}.", "{L}. What do you all think?",
        "Unpopular opinion: {n} is overrated.", "Unpopular opinion: {n} is underrated.",
        "Can someone explain {n} to me like I'm five?", "Anyone have tips on {n}?",
        "Spent the whole weekend on {n} and I regret nothing.", "Not gonna lie, {n} made my day.",
        "Reading about {n} again. {L}.", "Day {k} of learning about {n}. {L}.",
        "Me: I'll sleep early. Also me at 2am: {n}.", "If you care about {n}, read this: {u}",
        "Big news about {n}: {u}", "{L}. Thoughts on {n}?", "Still thinking about {n}.",
        "Reminder that {l}.", "New blog post about {n} {u}", "Hot take: {n} > {n2}.",
        "Shoutout to {m} for the advice on {n}.", "{m} you were right about {n}.",
        "Who else is obsessed with {n}? {r}", "{L}. {L2}.", "Quick question about {n}: is it worth it?",
        "Nobody talks about {n} enough.", "Talking about {n} with {m} tonight. {r}",
        "{N} is the best part of my week.", "Three things I learned about {n} this month. {u}",
        "Can we talk about {n} for a second? {L}.", "{L} 🙌", "ok but {l}",
        "Today's mood: {n}. {r}", "Is it just me or is {n} everywhere lately?",
        "{N} or {n2}? Asking for a friend.", "Finally tried {n} after months of {n2}.",
        "Swapped {n2} for {n} this week.", "{N}, {n2} and a lot of patience.",
        "Between {n} and {n2}, my week is full.", "Three hours reading about {n} {when}.",
        "Explaining {n} to {who} {when}.", "{Who} finally gets why I love {n}.",
        "Tried {n} in {city} and it was something else.", "Ranking {n}, {n2} and everything in between.",
        "{N} {when}. {L}.", "{Who} is into {n}, I'm into {n2}.", "{L}, and {who} saw it all.",
        "{When} I couldn't stop thinking about {n}.", "The debate about {n} vs {n2} never ends.",
        "Learned more about {n} {when} than in a year.", "{N} is overrated, {n2} is where it's at.",
        "My love-hate relationship with {n} continues.", "{Who} asked me about {n} and I talked for an hour.",
        "So {l}.", "Me, {when}: {l}.", "Not me reading about {n} {when} again.",
    ),
    "es": (
        "{L}.", "¡{L}!", "{L}. {r}", "{L}. ¡{r}!", "La verdad, {l}.", "{L}. ¿Qué opináis?",
        "Opinión impopular: lo de {n} está sobrevalorado.", "Opinión impopular: nadie valora {n}.",
        "¿Alguien me explica {n} como si tuviera cinco años?", "¿Alguien tiene consejos sobre {n}?",
        "Me pasé todo el finde con {n} y no me arrepiento.", "No os voy a mentir, {n} me ha alegrado el día.",
        "Leyendo otra vez sobre {n}. {L}.", "Día {k} aprendiendo sobre {n}. {L}.",
        "Yo: hoy me acuesto pronto. También yo a las 2: {n}.", "Si te interesa {n}, lee esto: {u}",
        "Noticias sobre {n}: {u}", "{L}. ¿Qué pensáis de {n}?", "Sigo pensando en {n}.",
        "Recordatorio: {l}.", "Nuevo post sobre {n} {u}", "Opinión: {n} > {n2}.",
        "Gracias a {m} por los consejos sobre {n}.", "{m} tenías razón con {n}.",
        "¿Quién más está obsesionado con {n}? {r}", "{L}. {L2}.",
        "Pregunta rápida sobre {n}: ¿merece la pena?",
        "Nadie habla lo suficiente de {n}.", "Esta noche hablando de {n} con {m}. {r}",
        "Lo mejor de mi semana: {n}.", "Tres cosas que he aprendido sobre {n} este mes. {u}",
        "¿Podemos hablar un segundo de {n}? {L}.", "{L} 🙌", "ok pero {l}",
        "Mood de hoy: {n}. {r}", "¿Soy yo o {n} está en todas partes últimamente?",
        "¿{N} o {n2}? Pregunto por un amigo.", "Por fin he probado {n} después de meses con {n2}.",
        "Esta semana he cambiado {n2} por {n}.", "{N}, {n2} y mucha paciencia.",
        "Entre {n} y {n2}, semana completa.", "Tres horas leyendo sobre {n} {when}.",
        "Explicándole {n} a {who} {when}.", "{Who} por fin entiende por qué me gusta tanto {n}.",
        "Probé {n} en {city} y fue otra cosa.", "Ranking de {n}, {n2} y todo lo demás.",
        "{N} {when}. {L}.", "{Who} prefiere {n}; yo, {n2}.", "{L}, y {who} lo vio todo.",
        "{When} no podía dejar de pensar en {n}.", "El debate entre {n} y {n2} no se acaba nunca.",
        "He aprendido más sobre {n} {when} que en todo el año.", "Lo de {n} está sobrevalorado, lo bueno es {n2}.",
        "Mi relación de amor y odio con {n} continúa.", "{Who} me preguntó por {n} y hablé una hora.",
        "Pues {l}.", "Yo, {when}: {l}.", "Aquí estoy otra vez leyendo sobre {n} {when}.",
    ),
}

OPENERS: dict[str, tuple[str, ...]] = {
    "en": ("Okay.", "Update:", "Random thought:", "PSA:", "Confession:", "Quick one:", "Real talk:", "Small win:",
           "Friendly reminder:", "Story time:", "Can confirm:", "Plot twist:", "Note to self:", "Lesson of the day:",
           "Weekend update:", "Late night thought:", "Morning thought:", "Honest question:", "So.", "Well.",
           "Right.", "Okay, hear me out.", "Not a drill:", "Status update:", "For the record:", "Fun fact:",
           "Life update:", "Serious question:", "Heads up:", "Anyway."),
    "es": ("Vale.", "Actualización:", "Pensamiento random:", "Aviso:", "Confesión:", "Una rápida:",
           "Hablando en serio:", "Pequeña victoria:", "Recordatorio amistoso:", "Os cuento:", "Confirmo:",
           "Giro de guion:", "Nota mental:", "Lección del día:", "Resumen del finde:", "Pensamiento nocturno:",
           "Pensamiento mañanero:", "Pregunta honesta:", "Bueno.", "A ver.", "Vale, escuchadme.", "No es broma:",
           "Estado actual:", "Que conste:", "Dato curioso:", "Novedades:", "Pregunta seria:", "Ojo:", "Atención:",
           "En fin."),
}

SECONDS: dict[str, tuple[str, ...]] = {
    "en": ("{L2}.", "Next up: {n2}.", "Also, {n2} is next on my list.", "Anyone else into {n2}?",
           "{N2} can wait until next week.", "Still undecided about {n2}.", "Tomorrow it's {n2}.",
           "And don't get me started on {n2}.", "Meanwhile {n2} keeps getting better.",
           "Next week: {n2}, finally.", "Thinking about {n2} next.", "Honestly {n2} deserves its own post.",
           "Part two will be about {n2}.", "Someone remind me to write about {n2}.",
           "{N2} is still a mystery to me.", "Then again, {n2} exists.", "I blame {n2} for all of this.",
           "Been reading about {n2} too.", "{N2} next, obviously.", "Also {l2}."),
    "es": ("{L2}.", "Lo siguiente: {n2}.", "Además, {n2} es lo próximo en mi lista.", "¿Alguien más con {n2}?",
           "Lo de {n2} puede esperar a la semana que viene.", "Sigo sin decidirme con {n2}.",
           "Mañana toca {n2}.", "Y mejor no hablemos de {n2}.", "Mientras tanto, {n2} cada vez mejor.",
           "La semana que viene: {n2}, por fin.", "Pensando en {n2} para lo siguiente.",
           "Lo de {n2} merece un post aparte.", "La segunda parte será sobre {n2}.",
           "Que alguien me recuerde escribir sobre {n2}.", "Lo de {n2} sigue siendo un misterio para mí.",
           "Aunque claro, también está {n2}.", "La culpa de todo la tiene {n2}.",
           "También he estado leyendo sobre {n2}.", "Después, {n2}, obviamente.", "Y encima {l2}."),
}

CONTEXTS: dict[str, tuple[str, ...]] = {
    "en": ("{When} and I'm still thinking about it.", "Posting this from {where}.", "{Who} thinks I've lost it.",
           "{Who} agrees, for once.", "Told {who} and got a blank stare.", "Blame {who}, they got me into this.",
           "Going with {who} {when}.", "Writing this {when} from {where}.", "Greetings from {city}.",
           "Anyone in {city} want to talk about it?", "Third time this month in {city}.",
           "Sent this to {who} {when}.", "{k} days in and no regrets.", "{k} hours on this {when}.",
           "Talked it through with {who} at {where}.", "{Who} says enough is enough.",
           "Thought of this {when} at {where}.", "Here in {city} nobody talks about anything else.",
           "{When}, {where}, and this is what I'm doing.", "I owe {who} one.",
           "{Who} and I argued about it {when}.", "Not what {who} expected from me {when}."),
    "es": ("{When} y sigo dándole vueltas.", "Escribo esto desde {where}.", "{Who} cree que se me ha ido la cabeza.",
           "{Who} está de acuerdo, por una vez.", "Se lo conté a {who} y ni caso.",
           "La culpa es de {who}, que me metió en esto.", "Voy con {who} {when}.",
           "Escribiendo esto {when} desde {where}.", "Saludos desde {city}.",
           "¿Alguien de {city} con quien comentarlo?", "Tercera vez este mes en {city}.",
           "Se lo mandé a {who} {when}.", "Llevo {k} días y ni un arrepentimiento.",
           "Llevo {k} horas con esto {when}.", "Lo hablé con {who} en {where}.", "{Who} dice que ya vale.",
           "Se me ocurrió {when} en {where}.", "Aquí en {city} no se habla de otra cosa.",
           "{When}, en {where}, y yo con esto.", "Le debo una a {who}.",
           "{Who} y yo discutimos sobre esto {when}.", "No es lo que {who} esperaba de mí {when}."),
}

CLOSERS: dict[str, tuple[str, ...]] = {
    "en": ("Thoughts?", "Change my mind.", "More soon.", "Wish me luck.", "Send help.", "Just saying.",
           "That's it, that's the post.", "No notes.", "Anyway.", "Back to work.", "Highly recommend.",
           "Ask me anything.", "Will report back.", "Let me know.", "Worth it.", "Zero regrets.", "Love it.",
           "Who's with me?", "Am I wrong?", "10/10.", "Happy weekend.", "Stay tuned.", "You've been warned.",
           "We'll see.", "Not sorry.", "Living the dream.", "Cheers.", "Ok bye."),
    "es": ("¿Opiniones?", "Convencedme de lo contrario.", "Más pronto.", "Deseadme suerte.", "Socorro.",
           "Solo digo eso.", "Y ya está, ese es el post.", "Sin más.", "En fin.", "A seguir currando.",
           "Lo recomiendo.", "Preguntadme lo que queráis.", "Ya os contaré.", "Decidme algo.", "Merece la pena.",
           "Cero arrepentimientos.", "Me encanta.", "¿Quién se apunta?", "¿Me equivoco?", "Un 10.",
           "Feliz finde.", "Seguiremos informando.", "Avisados estáis.", "Ya veremos.", "Y no me arrepiento.",
           "Viviendo el sueño.", "Salud.", "Hala, me voy."),
}

# Personal details for {who}, {where}, {when} and {city}.
WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "who": ("my sister", "my brother", "my roommate", "my dad", "my mom", "my partner", "my best friend",
                "my coworker", "my neighbour", "my flatmate", "my cousin", "my boss", "my kid", "my grandma",
                "my uncle", "my gym buddy", "the group chat", "my whole family", "my girlfriend", "my boyfriend",
                "my wife", "my husband", "my old teacher", "my landlord"),
        "where": ("the train", "my couch", "the office", "the gym", "the airport", "the bus stop", "my balcony",
                  "the library", "bed", "the kitchen", "a tiny cafe", "the park", "my desk",
                  "the queue at the bakery", "a hotel lobby", "the waiting room", "my car", "the back garden"),
        "when": ("this morning", "last night", "at 2am", "on my lunch break", "all weekend", "after work",
                 "before breakfast", "on Sunday", "yesterday", "tonight", "since Friday", "during the commute",
                 "at midnight", "every evening this week", "on a Monday", "right after dinner"),
        "city": ("London", "Manchester", "Chicago", "Austin", "Toronto", "Dublin", "Leeds", "Seattle", "Bristol",
                 "Melbourne", "Denver", "Glasgow", "Portland", "Vancouver", "Boston", "Edinburgh"),
    },
    "es": {
        "who": ("mi hermana", "mi hermano", "mi compañera de piso", "mi padre", "mi madre", "mi pareja",
                "mi mejor amiga", "mi mejor amigo", "un compañero de trabajo", "mi vecino", "mi primo", "mi prima",
                "mi jefa", "mi abuela", "mi tío", "el grupo de WhatsApp", "toda mi familia", "mi novia",
                "mi novio", "mi mujer", "mi marido", "mi cuñado", "mi sobrino", "mi casero"),
        "where": ("el tren", "el sofá", "la oficina", "el gimnasio", "el aeropuerto", "la parada del bus",
                  "el balcón", "la biblioteca", "la cama", "la cocina", "una cafetería pequeña", "el parque",
                  "mi escritorio", "la cola de la panadería", "el metro", "la sala de espera", "el coche",
                  "la terraza"),
        "when": ("esta mañana", "anoche", "a las 2 de la mañana", "en la pausa de la comida", "todo el finde",
                 "después del trabajo", "antes de desayunar", "el domingo", "ayer", "esta noche",
                 "desde el viernes", "de camino al curro", "a medianoche", "cada tarde esta semana",
                 "un lunes cualquiera", "justo después de cenar"),
        "city": ("Madrid", "Sevilla", "Valencia", "Bilbao", "Zaragoza", "Málaga", "Granada", "Barcelona",
                 "Bogotá", "Lima", "Buenos Aires", "Ciudad de México", "Santiago", "Montevideo", "Quito", "Murcia"),
    },
}

REPLY_TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": (
        "{o} {L}.", "{o} {r}", "Have you tried {n}?", "What about {n}?", "{r}", "{o} The key is {n}.",
        "This is why I love {n}.", "Honestly, {l}.", "Same here. {L}.", "Wait, {n}? Tell me more.",
        "{o} I had the same experience with {n}.", "Couldn't agree more about {n}.",
        "For me it was {n}, every time.", "You should look into {n}.", "{N} changed everything for me.",
        "I'd start with {n}, then {n2}.", "Try {n} before {n2}.", "My take: {n} over {n2}, always.",
        "{N} is underrated, {n2} is overrated.", "It depends on {n}, really.", "Funny, {l}.",
        "I keep telling people about {n}.", "{N} is harder than it looks.", "Did you see the news about {n}? {u}",
        "Here's a good read on {n}: {u}", "{r}. {L}.", "Same thing happened to me with {n} {when}.",
        "{Who} said the same about {n}.", "Give {n} a few weeks.", "Skip {n}, go straight to {n2}.",
        "{L}, just saying.", "Been there. {L}.", "{N} is exactly what I needed {when}.",
    ),
    "es": (
        "{o} {L}.", "{o} {r}", "¿Has probado {n}?", "¿Y qué me dices de {n}?", "{r}", "{o} La clave está en {n}.",
        "Por esto me encanta {n}.", "La verdad, {l}.", "A mí me pasa igual. {L}.",
        "Espera, ¿{n}? Cuéntame más.",
        "{o} Me pasó lo mismo con {n}.", "Totalmente de acuerdo con lo de {n}.",
        "Para mí siempre fue {n}.", "Deberías mirar lo de {n}.", "Lo de {n} me cambió la vida.",
        "Yo empezaría por {n} y luego {n2}.", "Prueba {n} antes que {n2}.", "Para mí, {n} antes que {n2}, siempre.",
        "Lo de {n} está infravalorado y lo de {n2} sobrevalorado.", "Depende de {n}, la verdad.",
        "Qué gracia, {l}.", "Siempre le hablo a la gente de {n}.", "Lo de {n} es más difícil de lo que parece.",
        "¿Viste las noticias sobre {n}? {u}", "Aquí una buena lectura sobre {n}: {u}", "{r}. {L}.",
        "Me pasó lo mismo con {n} {when}.", "{Who} dice lo mismo de {n}.", "Dale unas semanas a {n}.",
        "Olvídate de {n} y ve directo a {n2}.", "{L}, solo digo eso.", "Yo también. {L}.",
        "{N} es justo lo que necesitaba {when}.",
    ),
}

# How a reply starts; some pick up a noun of the post it answers ({pn}).
REPLY_STARTERS: dict[str, tuple[str, ...]] = {
    "en": ("Totally agree.", "Not sure about that.", "This!", "Exactly.", "Great point.", "lol", "Same.",
           "Hard disagree.", "100%.", "Honestly?", "Ha, yes.", "Wait, really?", "Oh no.", "Fair.",
           "Respectfully, no.", "Came here to say this.", "You're not alone.", "Big if true.", "Saving this.",
           "Ha!", "Oof.", "Yes yes yes.", "Interesting.", "Underrated take.", "Couldn't have said it better.",
           "Re {pn}: agreed.", "The bit about {pn} is so true.", "Agree on {pn}.", "{Pn}? Bold choice.",
           "{Pn} again? lol", "Ok the part about {pn} got me.", "Not {pn} again!", "Same with {pn} here.",
           "Was just talking about {pn} {when}.", "Ah, {pn}. Classic.", "Funny, I was reading about {pn} {when}.",
           "Everyone's talking about {pn} today.", "{Pn} is always the answer.", "You had me at {pn}."),
    "es": ("Totalmente de acuerdo.", "No lo tengo tan claro.", "¡Esto!", "Exacto.", "Muy buen punto.", "jajaja",
           "Igual.", "Para nada.", "100%.", "¿La verdad?", "Jaja, sí.", "¿En serio?", "Vaya.", "Justo.",
           "Con todo el respeto, no.", "Venía a decir esto.", "No estás solo.", "Me lo guardo.", "¡Ja!", "Uf.",
           "Sí sí sí.", "Interesante.", "Opinión infravalorada.", "No se puede decir mejor.",
           "Sobre {pn}: de acuerdo.", "Lo de {pn} es muy cierto.", "De acuerdo con lo de {pn}.",
           "¿{Pn}? Valiente.", "¿Otra vez {pn}? jaja", "Lo de {pn} me ha matado.", "¡Otra vez {pn} no!",
           "Me pasa igual con {pn}.", "Justo hablaba de {pn} {when}.", "Ah, {pn}. Un clásico.",
           "Qué casualidad, leía sobre {pn} {when}.", "Hoy todo el mundo habla de {pn}.",
           "{Pn} siempre es la respuesta.", "Me ganaste con {pn}."),
}

REPLY_OPENERS: dict[str, tuple[str, ...]] = {
    "en": ("Totally agree.", "Not sure about that.", "This!", "Exactly.", "Great point.", "lol", "Same.",
           "Hard disagree.", "100%.", "Honestly?", "Ha, yes.", "Wait, really?"),
    "es": ("Totalmente de acuerdo.", "No lo tengo tan claro.", "¡Esto!", "Exacto.", "Muy buen punto.",
           "jajaja",
           "Igual.", "Para nada.", "100%.", "¿La verdad?", "Jaja, sí.", "¿En serio?"),
}

REACTIONS: dict[str, tuple[str, ...]] = {
    "en": ("Love it", "So good", "Not sure how I feel about it", "10/10 would recommend", "Mind blown", "lol",
           "Absolutely wild", "Can't wait", "Worth it", "Big mood", "No regrets", "Send help", "Love this",
           "Wish me luck", "What a time to be alive", "Highly recommend"),
    "es": ("Me encanta", "Brutal", "Qué locura", "Lo recomiendo 100%", "jajaja", "No sé qué pensar",
           "Una maravilla", "Increíble", "Qué ganas", "Merece la pena", "Sin arrepentimientos", "Socorro",
           "Qué maravilla", "Deseadme suerte", "Vaya tiempos", "Muy recomendable"),
}

GENERIC_EMOJI = ("😂", "🙌", "🔥", "❤️", "😍", "🤔", "👀", "😅", "💯", "✨", "🙏", "😭", "👏", "🤯")

# Words near-duplicates swap (a word or two changed, the rest untouched).
SYNONYMS: dict[str, str] = {
    "great": "awesome", "really": "so", "today": "tonight", "incredible": "amazing", "best": "greatest",
    "again": "once more", "finally": "at last", "new": "latest", "love": "adore", "good": "nice",
    "hoy": "esta mañana", "increíble": "brutal", "mejor": "más top", "otra vez": "de nuevo",
    "por fin": "al fin", "nuevo": "último", "me encanta": "me flipa", "genial": "estupendo",
}

# --------------------------------------------------------------------------- spam and bots
SPAM_TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": (
        "🚀🚀 FREE {coin} GIVEAWAY 🚀🚀 Send {amt} {coin} and get {amt2} back!!! 👉 {u} #crypto #giveaway #{coin}",
        "Click here to claim your FREE iPhone 15!!!!!! Only {k} left 👉 {u}",
        "💰💰 Make ${k}00/day working from home!!! No experience needed!!! DM me or click here {u}",
        "WIN WIN WIN!!!!! {k} lucky winners today 🎁🎁🎁 {u} #win #free #giveaway",
        "Hot singles in your area!!!! 😍😍😍 {u}",
        "Your account has been selected 🎉🎉 verify now {u} !!!!!!",
        "{m} check your DMs!!! You won {k} {coin} 🚀🚀🚀 {u}",
        "LAST CHANCE!!! 90% OFF luxury watches ⌚⌚ {u} #sale #deal #luxury",
        "Earn passive income with our {coin} trading bot 🤖💸 1000% returns!!! {u}",
        "FOLLOW ME AND RT TO WIN {k},000 {coin}!!!!!! 🔥🔥🔥 {u}",
    ),
    "es": (
        "🚀 SORTEO de {coin} GRATIS!!! Envía {amt} {coin} y recibe {amt2} 👉 {u} #cripto #sorteo",
        "Gana dinero desde casa!!!!!! 💰💰 Sin experiencia!!! Haz clic aquí {u}",
        "GANADORES HOY!!! {k} premios 🎁🎁 {u} #sorteo #gratis",
        "Tu cuenta ha sido seleccionada 🎉 verifica aquí {u} !!!!!!",
        "{m} revisa tus mensajes!!! Has ganado {k} {coin} 🚀🚀 {u}",
        "OFERTA ÚNICA!!! 90% de descuento solo hoy ⌚⌚ {u} #oferta #chollo",
    ),
}
SPAM_HASHTAG_WALL = ("follow", "followback", "f4f", "like4like", "instagood", "crypto", "nft", "airdrop",
                     "giveaway", "free", "btc", "eth", "win", "promo", "teamfollowback", "rt")
SPAM_COINS = ("BTC", "ETH", "SOL", "DOGE", "XRP", "USDT", "SHIB")
SPAM_WORDS = ("crypto", "gift", "promo", "win", "free", "airdrop", "bonus", "deal", "prize")

BOT_KINDS = ("weather", "stocks", "reminder", "btc_price", "quake")
WEATHER_CITIES = {"en": ("London", "Chicago", "Seattle", "Dublin", "Toronto", "Sydney", "Boston", "Denver"),
                  "es": ("Madrid", "Sevilla", "Bilbao", "Valencia", "Bogotá", "Lima", "Quito", "Montevideo")}
WEATHER_CONDITIONS = {"en": ("sunny", "cloudy", "light rain", "heavy rain", "fog", "clear skies", "windy"),
                      "es": ("soleado", "nublado", "lluvia débil", "chubascos", "niebla", "despejado",
                             "viento")}
TICKERS = ("AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOGL", "META", "AMD", "NFLX", "INTC")
REMINDERS = {"en": ("drink water 💧", "stand up and stretch 🧘", "you are doing great 💪", "call your mom ☎️",
                    "take a break from the screen 👀", "back up your files 💾"),
             "es": ("bebe agua 💧", "levántate y estira 🧘", "lo estás haciendo genial 💪",
                    "llama a tu madre ☎️",
                    "descansa de la pantalla 👀", "haz copia de seguridad 💾")}
BOT_SOURCES = {"weather": "WeatherStationBot", "stocks": "TickerFeed", "reminder": "DailyReminderApp",
               "btc_price": "CoinPriceBot", "quake": "QuakeAlerts"}

# --------------------------------------------------------------------------- PII
PII_TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": ("Call me at {phone}", "DM me or text {phone} for details", "email me at {email}",
           "Reach me at {email} if you want the details", "my card {card} got declined again lol",
           "just send it to card {card} and I'll pay you back", "new number: {phone}, save it",
           "contact: {email} / {phone}"),
    "es": ("Llámame al {phone}", "escríbeme a {email}", "mi número es {phone}, avisadme",
           "mi tarjeta {card} me la han rechazado otra vez", "contacto: {email}", "nuevo número: {phone}"),
}
EMAIL_DOMAINS = ("gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "proton.me")

# --------------------------------------------------------------------------- other languages
FOREIGN_LINES: dict[str, tuple[str, ...]] = {
    "fr": ("Quelle belle journée pour une promenade au bord de la Seine",
           "Je ne comprends toujours pas pourquoi le train est encore en retard",
           "Le match d'hier soir était incroyable", "Rien de mieux qu'un croissant chaud le matin",
           "On se retrouve ce soir pour l'apéro ?", "Ce livre m'a complètement bouleversé",
           "Il pleut encore à Paris, quelle surprise", "J'ai enfin terminé mon mémoire, quel soulagement",
           "Les vacances commencent demain et je n'en peux plus d'attendre",
           "Quelqu'un connaît un bon restaurant à Lyon ?"),
    "de": ("Heute scheint in Berlin endlich wieder die Sonne",
           "Der Zug hat schon wieder zwanzig Minuten Verspätung",
           "Das Spiel gestern Abend war unglaublich spannend",
           "Nichts geht über einen guten Kaffee am Morgen",
           "Wer kommt heute Abend mit ins Kino?", "Ich habe das Buch in zwei Tagen durchgelesen",
           "Schon wieder Regen in Hamburg, typisch", "Endlich Wochenende, ich brauche dringend Schlaf",
           "Kennt jemand ein gutes Restaurant in München?", "Die neue Folge war der absolute Wahnsinn"),
    "pt": ("Que dia lindo para caminhar na praia", "O trânsito em São Paulo hoje está impossível",
           "O jogo de ontem foi inacreditável", "Nada melhor do que um café bem forte de manhã",
           "Alguém vai ao show hoje à noite?", "Terminei o livro em dois dias e recomendo muito",
           "Choveu o dia inteiro em Lisboa", "Finalmente sexta-feira, preciso descansar",
           "Alguém conhece um bom restaurante no Porto?", "O novo episódio foi simplesmente incrível"),
}

# --------------------------------------------------------------------------- people
FIRST_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("James", "Mary", "John", "Patricia", "Robert", "Jennifer", "Michael", "Linda", "David", "Emily",
           "William", "Sarah", "Daniel", "Jessica", "Matthew", "Ashley", "Chris", "Amanda", "Andrew", "Megan",
           "Joshua", "Rachel", "Ryan", "Lauren", "Kevin", "Hannah", "Brian", "Olivia", "Tyler", "Emma",
           "Jacob", "Sophie", "Nathan", "Chloe", "Ethan", "Grace", "Noah", "Zoe", "Liam", "Ava", "Priya",
           "Wei", "Aisha", "Kenji", "Omar", "Fatima", "Raj", "Mei", "Tom", "Kate"),
    "es": ("José", "María", "Juan", "Lucía", "Javier", "Sofía", "Carlos", "Martina", "Alejandro", "Paula",
           "Miguel", "Valentina", "Andrés", "Camila", "Sergio", "Daniela", "Pablo", "Carmen", "Diego", "Ana",
           "Raúl", "Elena", "Álvaro", "Lorena", "Iñaki", "Nuria", "Jesús", "Marta", "Rubén", "Irene",
           "Gonzalo", "Noelia", "Adrián", "Rocío", "Íñigo", "Begoña", "Óscar", "Ainhoa", "Ramón", "Inés"),
}
LAST_NAMES: dict[str, tuple[str, ...]] = {
    "en": ("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson",
           "Taylor",
           "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker",
           "Young", "Allen", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill", "Patel",
           "Nguyen", "Kim", "Chen", "Singh", "Khan", "Murphy", "O'Brien", "Cooper", "Reed"),
    "es": ("García", "Rodríguez", "González", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez",
           "Martín", "Jiménez", "Ruiz", "Hernández", "Díaz", "Moreno", "Muñoz", "Álvarez", "Romero", "Alonso",
           "Gutiérrez", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos", "Gil", "Ramírez", "Serrano",
           "Blanco", "Molina", "Núñez", "Ibáñez", "Peña", "Castaño", "Ortega", "Rubio", "Delgado", "Castro"),
}
HANDLE_WORDS = ("real", "the", "its", "official", "hey", "just", "mr", "ms", "dr", "not")

SOURCES = (
    '<a href="http://twitter.com/download/iphone" rel="nofollow">Twitter for iPhone</a>',
    '<a href="http://twitter.com/download/android" rel="nofollow">Twitter for Android</a>',
    '<a href="https://mobile.twitter.com" rel="nofollow">Twitter Web App</a>',
    '<a href="https://about.twitter.com/products/tweetdeck" rel="nofollow">TweetDeck</a>',
)

# --------------------------------------------------------------------------- helpers
_ACCENTS = str.maketrans("áéíóúüÁÉÍÓÚÜ¿¡", "aeiouuAEIOUU  ")


def strip_accents(text: str) -> str:
    """Write Spanish the way many people type it: no accents, no opening ¿ or ¡ (ñ is kept)."""
    return text.translate(_ACCENTS).replace("  ", " ").strip()


def ascii_fold(text: str) -> str:
    """``José Muñoz`` -> ``Jose Munoz`` (for handles and email addresses)."""
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def slug(text: str) -> str:
    """A URL path slug: lower-case ascii words joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", ascii_fold(text).lower()).strip("-")


# --------------------------------------------------------------------------- stories (bursts)
# A story is news that many people post about for a few hours: its own words and two hashtags (a post
# carries one, the other or both, so a detector must see they are one story). Some reuse a hashtag the
# topic has every day (#ChampionsLeague), whose rate then jumps above its baseline. ``topic`` is the
# everyday topic the story belongs to: its posts count as posts on that topic everywhere else.
@dataclass(frozen=True)
class Story:
    """One story's vocabulary in English and Spanish (``tags``: lang -> its two hashtags)."""

    name: str
    topic: str
    tags: dict[str, tuple[str, str]]
    nouns: dict[str, tuple[str, ...]]
    lines: dict[str, tuple[str, ...]]
    emoji: tuple[str, ...]


def _story(name: str, topic: str, tags: tuple[str, str, str, str], en_nouns: str, es_nouns: str, en_lines: str,
           es_lines: str, emoji: str) -> Story:
    return Story(name, topic, {"en": tags[:2], "es": tags[2:]}, {"en": _split(en_nouns, "|"), "es": _split(es_nouns, "|")},
                 {"en": _split(en_lines, "|"), "es": _split(es_lines, "|")}, _split(emoji, " "))


STORIES: tuple[Story, ...] = (
    _story("solar-eclipse", "space", ("SolarEclipse", "Eclipse2024", "EclipseSolar", "EclipseTotal"),
           "the eclipse | totality | the corona | eclipse glasses | the moon's shadow",
           "el eclipse | la totalidad | la corona solar | las gafas de eclipse | la sombra de la luna",
           "The eclipse just hit totality and the street went silent | You can see the corona with the naked eye "
           "right now | Everyone on my block is outside with eclipse glasses | The sky went dark at noon, the birds "
           "stopped singing | The moon's shadow is racing across the country | Totality lasted almost four minutes "
           "here",
           "El eclipse acaba de llegar a la totalidad y la calle se ha quedado muda | Se ve la corona solar a simple "
           "vista ahora mismo | Todo el barrio está fuera con gafas de eclipse | Se ha hecho de noche a mediodía y "
           "los pájaros se callaron | La sombra de la luna cruza el país ahora mismo | La totalidad ha durado casi "
           "cuatro minutos aquí", "🌑 🌞 🔭"),
    _story("cup-final", "football", ("ChampionsLeague", "UCLFinal", "Champions", "FinalChampions"),
           "the final | the penalty shootout | the trophy | extra time | the winning goal",
           "la final | la tanda de penaltis | el trofeo | la prórroga | el gol de la victoria",
           "The final is going to penalties, I can't breathe | What a winning goal in extra time | The keeper saved "
           "two penalties in the shootout | They lift the trophy after twenty years | The whole stadium is singing "
           "after the final whistle | That goal in the final will be replayed forever",
           "La final se va a los penaltis, no puedo respirar | Qué gol de la victoria en la prórroga | El portero ha "
           "parado dos penaltis en la tanda | Levantan el trofeo después de veinte años | Todo el estadio canta tras "
           "el pitido final | Ese gol de la final se verá mil veces", "⚽ 🏆 🥅"),
    _story("heatwave", "climate", ("Heatwave", "HeatAlert", "OlaDeCalor", "AlertaRoja"),
           "the heatwave | the red alert | the record temperature | the cooling centres | the power grid",
           "la ola de calor | la alerta roja | la temperatura récord | los refugios climáticos | la red eléctrica",
           "Forty-four degrees today, an all-time record for the city | The heat alert went red and schools are "
           "closing early | Cooling centres are full across town this afternoon | The power grid is struggling with "
           "every air conditioner on | Stay indoors, drink water, check on your neighbours | The heatwave record fell "
           "before lunch",
           "Cuarenta y cuatro grados hoy, récord absoluto en la ciudad | Alerta roja por calor y cierran los colegios "
           "antes | Los refugios climáticos están llenos esta tarde | La red eléctrica no aguanta con todos los aires "
           "encendidos | Quedaos en casa, bebed agua, preguntad a los vecinos | El récord de la ola de calor cayó "
           "antes de comer", "🥵 🌡️ ☀️"),
    _story("transit-strike", "travel", ("TransitStrike", "NoTrains", "HuelgaDeMetro", "SinMetro"),
           "the strike | the metro | the picket line | the replacement buses | the commute",
           "la huelga | el metro | el piquete | los autobuses lanzadera | el trayecto al trabajo",
           "No trains at all this morning, the strike is on | The metro stations are closed and the queues for "
           "buses are huge | Walked two hours to work because of the strike | The union says the strike continues "
           "tomorrow | Replacement buses are packed, nobody is moving | Half the office is stuck at home due to the "
           "strike",
           "Ni un tren esta mañana, la huelga va en serio | Las estaciones de metro cerradas y colas enormes para el "
           "autobús | He ido andando dos horas al trabajo por la huelga | El sindicato dice que la huelga sigue "
           "mañana | Los autobuses lanzadera van llenos, no se mueve nadie | Media oficina atrapada en casa por la "
           "huelga", "🚇 🚌 🪧"),
    _story("console-launch", "gaming", ("ConsoleLaunch", "NintendoSwitch", "NuevaConsola", "Videojuegos"),
           "the new console | the launch day | the preorder queue | the launch titles | the midnight opening",
           "la nueva consola | el día de lanzamiento | la cola de reservas | los juegos de salida | la apertura de "
           "medianoche",
           "The new console is sold out everywhere on launch day | Queued since midnight and got the last one | The "
           "launch titles are better than anyone expected | The preorder site crashed twice this morning | Unboxing "
           "the new console right now, it's tiny | Launch day servers are melting",
           "La nueva consola agotada en todas partes el día de lanzamiento | Haciendo cola desde medianoche y me "
           "llevé la última | Los juegos de salida son mejores de lo esperado | La web de reservas se cayó dos veces "
           "esta mañana | Abriendo la nueva consola ahora mismo, es diminuta | Los servidores del lanzamiento echan "
           "humo", "🎮 🕹️ 📦"),
    _story("festival-lineup", "music", ("FestivalLineup", "SummerFest", "CartelFestival", "FestivalDeVerano"),
           "the lineup | the headliner | the festival tickets | the reunion tour | the surprise act",
           "el cartel | el cabeza de cartel | las entradas del festival | la gira de reunión | la sorpresa del cartel",
           "The festival lineup just dropped and the headliner is unreal | Tickets sold out in eleven minutes after "
           "the lineup | A reunion show on the lineup, I'm crying | The surprise act on the lineup has everyone "
           "talking | Already planning the whole weekend around that lineup | Refreshing the ticket page for an "
           "hour, no luck",
           "Acaban de publicar el cartel del festival y el cabeza de cartel es increíble | Entradas agotadas en once "
           "minutos tras el cartel | Un concierto de reunión en el cartel, estoy llorando | La sorpresa del cartel "
           "tiene a todo el mundo hablando | Ya planeando todo el finde con ese cartel | Una hora recargando la web "
           "de entradas y nada", "🎤 🎶 🎟️"),
    _story("model-release", "ai_ml", ("OpenWeights", "NewModel", "NuevoModelo", "IAAbierta"),
           "the new model | the open weights | the benchmark results | the model card | the release notes",
           "el nuevo modelo | los pesos abiertos | los resultados del benchmark | la ficha del modelo | las notas de "
           "la versión",
           "A new open weights model just dropped and it tops every benchmark | Downloading the new model weights "
           "right now | The model card says it was trained on three trillion tokens | Everyone is posting benchmark "
           "results from the new model | The release notes mention a much longer context | Running the new model on "
           "my laptop already",
           "Acaba de salir un modelo de pesos abiertos y lidera todos los benchmarks | Descargando los pesos del "
           "nuevo modelo ahora mismo | La ficha del modelo dice que se entrenó con tres billones de tokens | Todo el "
           "mundo publica resultados del nuevo modelo | Las notas de la versión hablan de un contexto mucho más "
           "largo | Ya tengo el nuevo modelo corriendo en el portátil", "🤖 🧠 📈"),
    _story("grand-prix", "formula1", ("MonacoGP", "F1", "GPMonaco", "FórmulaUno"),
           "the race | the safety car | the pole position | the last lap | the pit stop",
           "la carrera | el coche de seguridad | la pole | la última vuelta | la parada en boxes",
           "Red flag in Monaco after a huge crash in the tunnel | The safety car is out again, what a race | From "
           "pole position to the win, flawless drive | The last lap in Monaco was pure chaos | A botched pit stop "
           "just cost them the race | Nobody expected that overtake at the harbour chicane",
           "Bandera roja en Mónaco tras un accidente enorme en el túnel | Sale otra vez el coche de seguridad, "
           "vaya carrera | De la pole a la victoria, carrera perfecta | La última vuelta en Mónaco fue puro caos | "
           "Una parada en boxes desastrosa les acaba de costar la carrera | Nadie esperaba ese adelantamiento en la "
           "chicane del puerto", "🏎️ 🏁 🚩"),
)
